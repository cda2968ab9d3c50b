//! MNIST as gzip-compressed IDX files: the bundled subset or the full set.

use std::io::Read;
use std::path::{Path, PathBuf};

use vi_infer::candle::{Device, Tensor};

/// What can go wrong reading the data: each variant names the file and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file is missing or unreadable.
    #[error(
        "{path}: cannot read it ({source}); expected a gzip-compressed IDX file (pass --data-dir with the MNIST files)"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not what an MNIST IDX file should be.
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was found against what was expected.
        msg: String,
    },
    /// A tensor could not be built.
    #[error(transparent)]
    Candle(#[from] vi_infer::candle::Error),
}

/// Reads a gzip-compressed IDX file: its dims and its bytes, checking the magic number
/// (`0x0000_08_0n`: unsigned bytes, `n` dims), the header and the length.
pub fn read_idx(path: &Path, expected_dims: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::Format {
            path: path.to_path_buf(),
            msg: format!("not a valid gzip stream ({e})"),
        })?;
    let bad = |msg: String| DataError::Format {
        path: path.to_path_buf(),
        msg,
    };
    if bytes.len() < 4 {
        return Err(bad(format!(
            "{} bytes, too short for an IDX header",
            bytes.len()
        )));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let want = 0x0000_0800 | expected_dims as u32;
    if magic != want {
        return Err(bad(format!(
            "magic number {magic:#010x}, expected {want:#010x} (unsigned bytes, {expected_dims} dims)"
        )));
    }
    let header = 4 + 4 * expected_dims;
    if bytes.len() < header {
        return Err(bad(format!(
            "{} bytes, shorter than the {header}-byte header",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..expected_dims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let n: usize = dims.iter().product();
    if bytes.len() != header + n {
        return Err(bad(format!(
            "{} data bytes, expected {n} for dims {dims:?}",
            bytes.len() - header
        )));
    }
    bytes.drain(..header);
    Ok((dims, bytes))
}

/// One split of MNIST: images as `[n, 784]` f32 in `[0, 1]`, and labels.
#[derive(Debug, Clone)]
pub struct Split {
    /// The pixels, `[n, 784]`, scaled to `[0, 1]`.
    pub images: Tensor,
    /// The digit of each image.
    pub labels: Vec<u8>,
}

impl Split {
    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Reads `{prefix}-images-idx3-ubyte.gz` and `{prefix}-labels-idx1-ubyte.gz` from `dir`.
pub fn load_split(dir: &Path, prefix: &str, device: &Device) -> Result<Split, DataError> {
    let images_path = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let labels_path = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    let (dims, pixels) = read_idx(&images_path, 3)?;
    if dims[1] != 28 || dims[2] != 28 {
        return Err(DataError::Format {
            path: images_path,
            msg: format!("images of {}x{}, expected 28x28", dims[1], dims[2]),
        });
    }
    let (ldims, labels) = read_idx(&labels_path, 1)?;
    if ldims[0] != dims[0] {
        return Err(DataError::Format {
            path: labels_path,
            msg: format!("{} labels for {} images", ldims[0], dims[0]),
        });
    }
    if let Some(l) = labels.iter().find(|&&l| l > 9) {
        return Err(DataError::Format {
            path: labels_path,
            msg: format!("label {l}, expected digits 0 to 9"),
        });
    }
    // One pass on the host into one f32 buffer: the value candle's `to_dtype` then `/ 255`
    // gives (its division is `x * (1 / 255) + 0` in f32), without a u8 tensor and a second
    // 4-byte-per-pixel buffer (188 MB each for the full set, zeroed by the kernel).
    let scale = (1.0f64 / 255.0) as f32;
    let pixels: Vec<f32> = pixels.iter().map(|&p| f32::from(p) * scale + 0.0).collect();
    let images = Tensor::from_vec(pixels, (dims[0], 784), &Device::Cpu)?.to_device(device)?;
    Ok(Split { images, labels })
}

/// The bundled subset that ships with the example.
pub fn bundled_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// Training and test splits from `dir` (`train-*` and `t10k-*`).
pub fn load(dir: &Path, device: &Device) -> Result<(Split, Split), DataError> {
    Ok((
        load_split(dir, "train", device)?,
        load_split(dir, "t10k", device)?,
    ))
}
