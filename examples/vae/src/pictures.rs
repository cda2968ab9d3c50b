//! The pictures the example writes: digit grids and the ELBO curve, drawn into a plain 8-bit
//! [`Raster`] and encoded by the `png` crate (a plot needs only lines, dots and a few labels,
//! so a small built-in bitmap font replaces a plotting and font-rendering dependency).

/// An 8-bit picture, grayscale (one channel) or RGB (three), stored row by row.
///
/// ```
/// let img = vae::pictures::Raster::rgb(3, 2, [255, 0, 0]);
/// assert_eq!((img.width(), img.height(), img.channels()), (3, 2, 3));
/// assert_eq!(img.pixel(2, 1), Some(&[255u8, 0, 0][..]));
/// assert_eq!(img.pixel(3, 0), None);
/// let png = img.to_png()?;
/// assert_eq!(&png[1..4], b"PNG");
/// # Ok::<(), png::EncodingError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raster {
    width: u32,
    height: u32,
    channels: usize,
    data: Vec<u8>,
}

impl Raster {
    /// A grayscale picture, every pixel `value`.
    ///
    /// ```
    /// let img = vae::pictures::Raster::gray(4, 1, 128);
    /// assert_eq!(img.pixel(0, 0), Some(&[128u8][..]));
    /// ```
    pub fn gray(width: u32, height: u32, value: u8) -> Self {
        Self::filled(width, height, &[value])
    }

    /// An RGB picture, every pixel `color`.
    ///
    /// ```
    /// let img = vae::pictures::Raster::rgb(4, 1, [1, 2, 3]);
    /// assert_eq!(img.channels(), 3);
    /// ```
    pub fn rgb(width: u32, height: u32, color: [u8; 3]) -> Self {
        Self::filled(width, height, &color)
    }

    fn filled(width: u32, height: u32, pixel: &[u8]) -> Self {
        let n = width as usize * height as usize;
        Self {
            width,
            height,
            channels: pixel.len(),
            data: pixel.repeat(n),
        }
    }

    /// Width in pixels.
    ///
    /// ```
    /// assert_eq!(vae::pictures::Raster::gray(4, 1, 0).width(), 4);
    /// ```
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    ///
    /// ```
    /// assert_eq!(vae::pictures::Raster::gray(4, 1, 0).height(), 1);
    /// ```
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Channels per pixel: 1 (grayscale) or 3 (RGB).
    ///
    /// ```
    /// assert_eq!(vae::pictures::Raster::gray(4, 1, 0).channels(), 1);
    /// ```
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The channels of the pixel at column `x`, row `y` (`None` outside the picture).
    ///
    /// ```
    /// let img = vae::pictures::Raster::gray(2, 2, 9);
    /// assert_eq!(img.pixel(1, 1), Some(&[9u8][..]));
    /// ```
    pub fn pixel(&self, x: u32, y: u32) -> Option<&[u8]> {
        self.offset(x as i64, y as i64)
            .map(|i| &self.data[i..i + self.channels])
    }

    fn offset(&self, x: i64, y: i64) -> Option<usize> {
        let inside = x >= 0 && y >= 0 && x < self.width as i64 && y < self.height as i64;
        inside.then(|| (y as usize * self.width as usize + x as usize) * self.channels)
    }

    /// Sets the pixel at `(x, y)`; a point outside the picture is skipped (clipping).
    fn put(&mut self, x: i64, y: i64, c: &[u8]) {
        if let Some(i) = self.offset(x, y) {
            let n = self.channels.min(c.len());
            self.data[i..i + n].copy_from_slice(&c[..n]);
        }
    }

    /// The picture as the bytes of a PNG file (8 bits per channel).
    ///
    /// ```
    /// let png = vae::pictures::Raster::gray(2, 2, 0).to_png()?;
    /// assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    /// # Ok::<(), png::EncodingError>(())
    /// ```
    pub fn to_png(&self) -> Result<Vec<u8>, png::EncodingError> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, self.width, self.height);
        encoder.set_color(if self.channels == 3 {
            png::ColorType::Rgb
        } else {
            png::ColorType::Grayscale
        });
        encoder.set_depth(png::BitDepth::Eight);
        // fdeflate's PNG-tuned DEFLATE: the per-epoch pictures cost a fraction of what the
        // default (miniz, `Balanced`) costs between epochs, for slightly larger files.
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.data)?;
        writer.finish()?;
        Ok(bytes)
    }
}

/// Side of an MNIST image.
const SIDE: u32 = 28;

/// A grid of 28×28 grayscale digits: `rows × cols` images from `pixels` (row-major, each
/// 784 values in `[0, 1]`, `None` for an empty cell), separated by `gap` mid-gray pixels and
/// scaled up `zoom` times (nearest neighbour).
///
/// ```
/// let one = vec![0.5f32; 784];
/// let img = vae::pictures::digit_grid(&[Some(one.as_slice()), None], 1, 2, 2, 1);
/// assert_eq!((img.width(), img.height()), (2 * 28 + 3 * 2, 28 + 2 * 2));
/// ```
pub fn digit_grid(pixels: &[Option<&[f32]>], rows: u32, cols: u32, gap: u32, zoom: u32) -> Raster {
    let zoom = zoom.max(1);
    let cell = SIDE * zoom;
    let width = cols * cell + (cols + 1) * gap;
    let height = rows * cell + (rows + 1) * gap;
    let mut img = Raster::gray(width, height, 128);
    for (i, digit) in pixels.iter().enumerate().take((rows * cols) as usize) {
        let (r, c) = (i as u32 / cols, i as u32 % cols);
        let (x0, y0) = (gap + c * (cell + gap), gap + r * (cell + gap));
        for y in 0..cell {
            for x in 0..cell {
                let v = digit.map_or(0.0, |d| {
                    d.get(((y / zoom) * SIDE + x / zoom) as usize)
                        .copied()
                        .unwrap_or(0.0)
                });
                let v = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                img.put((x0 + x) as i64, (y0 + y) as i64, &[v]);
            }
        }
    }
    img
}

/// One line of the ELBO plot: points `(x, y)`, a colour, and whether to mark each point.
#[derive(Clone, Debug)]
pub struct Series {
    /// What the legend says.
    pub label: String,
    /// The points, `x` in epochs.
    pub points: Vec<(f64, f64)>,
    /// The colour.
    pub color: [u8; 3],
    /// Line width in pixels.
    pub width: u32,
    /// Whether each point gets a dot.
    pub markers: bool,
}

const WIDTH: u32 = 720;
const HEIGHT: u32 = 440;
const LEFT: u32 = 70;
const RIGHT: u32 = 20;
const TOP: u32 = 34;
const BOTTOM: u32 = 44;

/// The plot of `series` (x: epochs, y: ELBO per image), with axes, ticks, tick labels, a
/// title and a legend. `y_range` bounds the y axis (`None`: the range of every point);
/// points outside are clipped at the frame.
///
/// ```
/// use vae::pictures::{Series, plot};
/// let s = Series { label: "test".into(), points: vec![(1.0, -150.0), (2.0, -130.0)],
///                  color: [255, 127, 14], width: 2, markers: true };
/// let img = plot("ELBO per image", &[s], None);
/// assert_eq!(img.width(), 720);
/// ```
pub fn plot(title: &str, series: &[Series], y_range: Option<(f64, f64)>) -> Raster {
    let mut img = Raster::rgb(WIDTH, HEIGHT, [255, 255, 255]);
    let all = || series.iter().flat_map(|s| s.points.iter());
    let finite = |v: &f64| v.is_finite();
    let xmax = all().map(|p| p.0).filter(finite).fold(1.0f64, f64::max);
    let (ylo, yhi) = y_range.unwrap_or_else(|| {
        let ys = all().map(|p| p.1).filter(finite);
        let lo = ys.clone().fold(f64::INFINITY, f64::min);
        let hi = ys.fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) }
    });
    let (ylo, yhi) = if yhi - ylo < 1e-9 {
        (ylo - 1.0, yhi + 1.0)
    } else {
        let pad = 0.05 * (yhi - ylo);
        (ylo - pad, yhi + pad)
    };
    let (x0, x1) = (LEFT as f64, (WIDTH - RIGHT) as f64);
    let (y0, y1) = ((HEIGHT - BOTTOM) as f64, TOP as f64);
    let px = |x: f64| x0 + (x / xmax) * (x1 - x0);
    let py = |y: f64| y0 + (y - ylo) / (yhi - ylo) * (y1 - y0);
    let frame = Frame {
        x0: LEFT as i64,
        x1: (WIDTH - RIGHT) as i64,
        y0: TOP as i64,
        y1: (HEIGHT - BOTTOM) as i64,
    };
    let grid = [232, 232, 232];
    let ink = [40, 40, 40];

    // Y ticks at a 1-2-5 step, with grid lines and labels.
    let step = nice_step((yhi - ylo) / 8.0);
    let mut t = (ylo / step).ceil() * step;
    while t <= yhi {
        let y = py(t).round() as i64;
        hline(&mut img, frame.x0, frame.x1, y, grid);
        hline(&mut img, frame.x0 - 5, frame.x0, y, ink);
        let label = format_tick(t, step);
        let w = text_width(&label, 1) as i64;
        text(&mut img, frame.x0 - 9 - w, y - 3, &label, 1, ink);
        t += step;
    }
    // X ticks at whole epochs (every k-th when there are many).
    let every = nice_step(xmax / 10.0).max(1.0) as usize;
    for e in (0..=xmax.floor() as usize).step_by(every) {
        let x = px(e as f64).round() as i64;
        vline(&mut img, x, frame.y0, frame.y1, grid);
        vline(&mut img, x, frame.y1, frame.y1 + 5, ink);
        let label = e.to_string();
        let w = text_width(&label, 1) as i64;
        text(&mut img, x - w / 2, frame.y1 + 9, &label, 1, ink);
    }
    let xlabel = "epoch";
    let w = text_width(xlabel, 2) as i64;
    text(
        &mut img,
        (frame.x0 + frame.x1) / 2 - w / 2,
        frame.y1 + 22,
        xlabel,
        2,
        ink,
    );
    let w = text_width(title, 2) as i64;
    text(&mut img, (WIDTH as i64 - w) / 2, 10, title, 2, ink);
    // The frame.
    hline(&mut img, frame.x0, frame.x1, frame.y0, ink);
    hline(&mut img, frame.x0, frame.x1, frame.y1, ink);
    vline(&mut img, frame.x0, frame.y0, frame.y1, ink);
    vline(&mut img, frame.x1, frame.y0, frame.y1, ink);

    for s in series {
        let color = s.color;
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&(x, y)| (px(x), py(y)))
            .collect();
        for w in pts.windows(2) {
            line(&mut img, w[0], w[1], s.width, color, &frame);
        }
        if s.markers || pts.len() == 1 {
            for &(x, y) in &pts {
                dot(&mut img, x, y, 3, color, &frame);
            }
        }
    }

    // The legend, bottom right inside the frame (learning curves rise), on a white box.
    let longest = series
        .iter()
        .map(|s| text_width(&s.label, 1))
        .max()
        .unwrap_or(0) as i64;
    let lx = frame.x1 - longest - 40;
    let ly = frame.y1 - 12 - 14 * series.len() as i64;
    for y in ly - 4..frame.y1 - 6 {
        for x in lx - 8..frame.x1 - 6 {
            put(&mut img, x, y, [255, 255, 255]);
        }
    }
    hline(&mut img, lx - 8, frame.x1 - 6, ly - 4, grid);
    hline(&mut img, lx - 8, frame.x1 - 6, frame.y1 - 6, grid);
    vline(&mut img, lx - 8, ly - 4, frame.y1 - 6, grid);
    vline(&mut img, frame.x1 - 6, ly - 4, frame.y1 - 6, grid);
    for (i, s) in series.iter().enumerate() {
        let y = ly + 6 + 14 * i as i64;
        let color = s.color;
        line(
            &mut img,
            (lx as f64, y as f64),
            ((lx + 20) as f64, y as f64),
            s.width,
            color,
            &frame,
        );
        if s.markers {
            dot(&mut img, (lx + 10) as f64, y as f64, 3, color, &frame);
        }
        text(&mut img, lx + 26, y - 3, &s.label, 1, ink);
    }
    img
}

/// The plot area, in pixels (inclusive).
struct Frame {
    x0: i64,
    x1: i64,
    y0: i64,
    y1: i64,
}

impl Frame {
    fn contains(&self, x: i64, y: i64) -> bool {
        x >= self.x0 && x <= self.x1 && y >= self.y0 && y <= self.y1
    }
}

/// The smallest of 1, 2, 5 × 10^k at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag)
}

/// A tick label with as many decimals as the step needs.
fn format_tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    let s = format!("{v:.decimals$}");
    if s.starts_with("-") && s.trim_start_matches(['-', '0', '.']).is_empty() {
        s[1..].to_string()
    } else {
        s
    }
}

fn put(img: &mut Raster, x: i64, y: i64, c: [u8; 3]) {
    img.put(x, y, &c);
}

fn hline(img: &mut Raster, x0: i64, x1: i64, y: i64, c: [u8; 3]) {
    for x in x0..=x1 {
        put(img, x, y, c);
    }
}

fn vline(img: &mut Raster, x: i64, y0: i64, y1: i64, c: [u8; 3]) {
    for y in y0..=y1 {
        put(img, x, y, c);
    }
}

/// A line `width` pixels wide from `a` to `b`, clipped to the frame.
fn line(img: &mut Raster, a: (f64, f64), b: (f64, f64), width: u32, c: [u8; 3], frame: &Frame) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let n = dx.abs().max(dy.abs()).ceil().max(1.0) as usize;
    let half = width as f64 / 2.0;
    for i in 0..=n {
        let t = i as f64 / n as f64;
        let (x, y) = (a.0 + t * dx, a.1 + t * dy);
        let lo = (-(half - 0.5)).round() as i64;
        for ox in lo..lo + width as i64 {
            for oy in lo..lo + width as i64 {
                let (xi, yi) = (x.round() as i64 + ox, y.round() as i64 + oy);
                if frame.contains(xi, yi) {
                    put(img, xi, yi, c);
                }
            }
        }
    }
}

/// A filled disc of radius `r` at `(x, y)`, clipped to the frame.
fn dot(img: &mut Raster, x: f64, y: f64, r: i64, c: [u8; 3], frame: &Frame) {
    let (cx, cy) = (x.round() as i64, y.round() as i64);
    for oy in -r..=r {
        for ox in -r..=r {
            if ox * ox + oy * oy <= r * r + 1 && frame.contains(cx + ox, cy + oy) {
                put(img, cx + ox, cy + oy, c);
            }
        }
    }
}

/// Width of `s` in pixels at `scale`.
fn text_width(s: &str, scale: u32) -> u32 {
    s.chars().count() as u32 * 6 * scale
}

/// Draws `s` with its top left corner at `(x, y)`, each font pixel `scale` pixels wide.
fn text(img: &mut Raster, x: i64, y: i64, s: &str, scale: u32, c: [u8; 3]) {
    let scale = scale as i64;
    for (i, ch) in s.chars().enumerate() {
        let Some(rows) = glyph(ch) else { continue };
        let gx = x + i as i64 * 6 * scale;
        for (r, row) in rows.iter().enumerate() {
            for (col, b) in row.bytes().enumerate() {
                if b != b'#' {
                    continue;
                }
                for sy in 0..scale {
                    for sx in 0..scale {
                        put(
                            img,
                            gx + col as i64 * scale + sx,
                            y + r as i64 * scale + sy,
                            c,
                        );
                    }
                }
            }
        }
    }
}

/// A 5×7 bitmap of `ch`, for the few characters the plot writes (`None` draws a blank).
fn glyph(ch: char) -> Option<[&'static str; 7]> {
    Some(match ch {
        '0' => [
            " ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### ",
        ],
        '1' => [
            "  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### ",
        ],
        '2' => [
            " ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####",
        ],
        '3' => [
            "#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### ",
        ],
        '4' => [
            "   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # ",
        ],
        '5' => [
            "#####", "#    ", "#### ", "    #", "    #", "#   #", " ### ",
        ],
        '6' => [
            "  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### ",
        ],
        '7' => [
            "#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   ",
        ],
        '8' => [
            " ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### ",
        ],
        '9' => [
            " ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  ",
        ],
        '-' => [
            "     ", "     ", "     ", " ### ", "     ", "     ", "     ",
        ],
        '.' => [
            "     ", "     ", "     ", "     ", "     ", " ##  ", " ##  ",
        ],
        ',' => [
            "     ", "     ", "     ", "     ", " ##  ", "  #  ", " #   ",
        ],
        '(' => [
            "   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # ",
        ],
        ')' => [
            " #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   ",
        ],
        'a' => [
            "     ", "     ", " ### ", "    #", " ####", "#   #", " ####",
        ],
        'c' => [
            "     ", "     ", " ### ", "#    ", "#    ", "#   #", " ### ",
        ],
        'e' => [
            "     ", "     ", " ### ", "#   #", "#####", "#    ", " ### ",
        ],
        'g' => [
            "     ", " ####", "#   #", "#   #", " ####", "    #", " ### ",
        ],
        'h' => [
            "#    ", "#    ", "# ## ", "##  #", "#   #", "#   #", "#   #",
        ],
        'i' => [
            "  #  ", "     ", " ##  ", "  #  ", "  #  ", "  #  ", " ### ",
        ],
        'm' => [
            "     ", "     ", "## # ", "# # #", "# # #", "#   #", "#   #",
        ],
        'n' => [
            "     ", "     ", "# ## ", "##  #", "#   #", "#   #", "#   #",
        ],
        'o' => [
            "     ", "     ", " ### ", "#   #", "#   #", "#   #", " ### ",
        ],
        'p' => [
            "     ", "     ", "#### ", "#   #", "#### ", "#    ", "#    ",
        ],
        'r' => [
            "     ", "     ", "# ## ", "##  #", "#    ", "#    ", "#    ",
        ],
        's' => [
            "     ", "     ", " ####", "#    ", " ### ", "    #", "#### ",
        ],
        't' => [
            " #   ", " #   ", "###  ", " #   ", " #   ", " #  #", "  ## ",
        ],
        'B' => [
            "#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### ",
        ],
        'E' => [
            "#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####",
        ],
        'L' => [
            "#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####",
        ],
        'O' => [
            " ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### ",
        ],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_ticks() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(13.0), 20.0);
        assert_eq!(nice_step(30.0), 50.0);
        assert_eq!(format_tick(-150.0, 10.0), "-150");
        assert_eq!(format_tick(-0.0, 0.5), "0.0");
    }
}
