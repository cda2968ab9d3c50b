//! The files a run writes in its output directory: the pictures (reconstructions, samples,
//! ELBO curve) and the CSV files of the epochs' figures and the steps' losses, each written
//! to a temporary file then renamed over the old one; and the reading back of the CSV files
//! when a run resumes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_infer::candle::{DType, Device, Tensor};

use crate::checkpoint::CHECKPOINT_META;
use crate::data::Split;
use crate::model::Vae;
use crate::pictures::{self, Series};
use crate::train::{EpochStats, StepRecord, TrainConfig, TrainError, streams, sub_seed};

/// The files a run writes in its output directory.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// Test digits (odd rows) over their reconstructions (even rows), one column per digit.
    pub reconstructions: PathBuf,
    /// Images decoded from 100 fixed draws of the prior.
    pub samples: PathBuf,
    /// The ELBO curve.
    pub curve: PathBuf,
    /// The per-epoch figures.
    pub epochs_csv: PathBuf,
    /// The per-step losses.
    pub steps_csv: PathBuf,
    /// The checkpoint's description (what `--resume` reads).
    pub checkpoint: PathBuf,
}

impl Outputs {
    /// The files in `dir`.
    ///
    /// ```
    /// let o = vae::outputs::Outputs::in_dir("out".as_ref());
    /// assert_eq!(o.samples, std::path::Path::new("out/samples.png"));
    /// ```
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            reconstructions: dir.join("reconstructions.png"),
            samples: dir.join("samples.png"),
            curve: dir.join("elbo.png"),
            epochs_csv: dir.join("epochs.csv"),
            steps_csv: dir.join("steps.csv"),
            checkpoint: dir.join(CHECKPOINT_META),
        }
    }
}

/// Test images for the reconstruction grid: in row `r`, column `d`, the `r`-th test image
/// of digit `d` (4 rows of 10).
pub(crate) fn reconstruction_picks(labels: &[u8]) -> Vec<Option<usize>> {
    let mut picks = vec![None; 40];
    let mut seen = [0usize; 10];
    for (i, &l) in labels.iter().enumerate() {
        let d = l as usize;
        if d < 10 && seen[d] < 4 {
            picks[seen[d] * 10 + d] = Some(i);
            seen[d] += 1;
        }
    }
    picks
}

/// Rows of a `[n, 784]` tensor on the host.
fn host_rows(t: &Tensor) -> Result<Vec<Vec<f32>>, TrainError> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()?)
}

pub(crate) fn write_pictures(
    vae: &Vae,
    test: &Split,
    picks: &[Option<usize>],
    history: &[EpochStats],
    steps: &[StepRecord],
    cfg: &TrainConfig,
    outputs: &Outputs,
) -> Result<(), TrainError> {
    // Reconstructions: pairs of rows, the test digits over their reconstructions.
    let chosen: Vec<u32> = picks.iter().flatten().map(|&i| i as u32).collect();
    let idx = Tensor::from_slice(&chosen, chosen.len(), &cfg.device)?;
    let originals = test.images.index_select(&idx, 0)?;
    let recon = vae.reconstruct(&originals)?;
    let (orig, rec) = (host_rows(&originals)?, host_rows(&recon)?);
    // Cell `p` of the picks is row `row_of[p]` of the tensors above.
    let mut row_of = vec![None; picks.len()];
    let mut next = 0;
    for (p, pick) in picks.iter().enumerate() {
        if pick.is_some() {
            row_of[p] = Some(next);
            next += 1;
        }
    }
    let mut cells: Vec<Option<&[f32]>> = Vec::with_capacity(80);
    for r in 0..4 {
        for pass in [&orig, &rec] {
            for c in 0..10 {
                cells.push(row_of[r * 10 + c].and_then(|k| pass.get(k).map(Vec::as_slice)));
            }
        }
    }
    save(
        &pictures::digit_grid(&cells, 8, 10, 2, 2),
        &outputs.reconstructions,
    )?;

    // Samples: 100 fixed draws of the prior, decoded.
    let mut rng = ChaCha8Rng::seed_from_u64(sub_seed(cfg.seed, streams::SAMPLES));
    let samples = host_rows(&vae.sample_prior(100, &mut rng)?)?;
    let cells: Vec<Option<&[f32]>> = samples.iter().map(|s| Some(s.as_slice())).collect();
    save(
        &pictures::digit_grid(&cells, 10, 10, 2, 2),
        &outputs.samples,
    )?;

    // The ELBO curve: each step's training ELBO per image (x in epochs), each epoch's
    // training and test ELBO.
    let per_epoch = steps.iter().fold(0, |m, s| m.max(s.step)).max(1) as f64;
    let step_points: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| {
            (
                (s.epoch - 1) as f64 + s.step as f64 / per_epoch,
                -s.loss / s.images as f64,
            )
        })
        .collect();
    // The y range leaves out the first half of the first epoch (the initial loss is far
    // below everything after it and would flatten the rest of the curve).
    let settled = step_points
        .iter()
        .filter(|p| p.0 > 0.5 || history.len() <= 1)
        .map(|p| p.1)
        .chain(history.iter().flat_map(|h| [h.train_elbo, h.test_elbo]))
        .filter(|v| v.is_finite());
    let lo = settled.clone().fold(f64::INFINITY, f64::min);
    let hi = settled.fold(f64::NEG_INFINITY, f64::max);
    let range = (lo.is_finite() && hi.is_finite()).then_some((lo, hi));
    let series = [
        Series {
            label: "train ELBO, per step".into(),
            points: step_points,
            color: [170, 200, 235],
            width: 1,
            markers: false,
        },
        Series {
            label: "train ELBO, per epoch".into(),
            points: history
                .iter()
                .map(|h| (h.epoch as f64, h.train_elbo))
                .collect(),
            color: [31, 119, 180],
            width: 2,
            markers: true,
        },
        Series {
            label: "test ELBO".into(),
            points: history
                .iter()
                .map(|h| (h.epoch as f64, h.test_elbo))
                .collect(),
            color: [255, 127, 14],
            width: 2,
            markers: true,
        },
    ];
    save(
        &pictures::plot("ELBO per image", &series, range),
        &outputs.curve,
    )
}

fn save(img: &pictures::Raster, path: &Path) -> Result<(), TrainError> {
    let bytes = img.to_png().map_err(|source| TrainError::Image {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

pub(crate) fn rename(from: &Path, to: &Path) -> Result<(), TrainError> {
    std::fs::rename(from, to).map_err(|source| TrainError::Io {
        path: to.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|source| TrainError::Io {
        path: tmp.clone(),
        source,
    })?;
    rename(&tmp, path)
}

const EPOCHS_HEADER: &str = "epoch,train_elbo,test_elbo,kl_per_dim,seconds";
/// The header with the test log-likelihood column (`--ll-samples`).
const EPOCHS_LL_HEADER: &str = "epoch,train_elbo,test_elbo,kl_per_dim,seconds,test_ll";
const STEPS_HEADER: &str = "epoch,step,images,loss";

/// Writes the per-epoch figures (full precision: `f64`'s shortest round-trip form), with the
/// `test_ll` column when `ll` (`--ll-samples`).
pub(crate) fn write_epochs(
    path: &Path,
    history: &[EpochStats],
    ll: bool,
) -> Result<(), TrainError> {
    let mut s = format!("{}\n", if ll { EPOCHS_LL_HEADER } else { EPOCHS_HEADER });
    for h in history {
        let _ = write!(
            s,
            "{},{},{},{},{}",
            h.epoch, h.train_elbo, h.test_elbo, h.kl_per_dim, h.seconds
        );
        if ll {
            match h.test_ll {
                Some(v) => {
                    let _ = write!(s, ",{v}");
                }
                None => s.push(','),
            }
        }
        s.push('\n');
    }
    write_atomic(path, s.as_bytes())
}

pub(crate) fn write_steps(path: &Path, steps: &[StepRecord]) -> Result<(), TrainError> {
    let mut s = format!("{STEPS_HEADER}\n");
    for r in steps {
        let _ = writeln!(s, "{},{},{},{}", r.epoch, r.step, r.images, r.loss);
    }
    write_atomic(path, s.as_bytes())
}

/// The rows of a CSV file written by this module, up to epoch `upto`, each parsed by `row`.
fn read_csv<T>(
    path: &Path,
    header: &str,
    upto: usize,
    row: impl Fn(&[&str]) -> Option<(usize, T)>,
) -> Result<Vec<T>, TrainError> {
    let bad = |msg: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(format!(
            "cannot read it ({e}); it is written with the checkpoint"
        ))
    })?;
    let mut lines = text.lines();
    if lines.next() != Some(header) {
        return Err(bad(format!("expected the header `{header}`")));
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let cols: Vec<&str> = line.split(',').collect();
        let (epoch, value) = row(&cols).ok_or_else(|| bad(format!("line {}: `{line}`", i + 2)))?;
        if epoch <= upto {
            out.push(value);
        }
    }
    Ok(out)
}

/// The per-epoch figures up to epoch `upto`, from a file written with the `test_ll` column
/// when `ll`.
pub(crate) fn read_epochs(
    path: &Path,
    upto: usize,
    ll: bool,
) -> Result<Vec<EpochStats>, TrainError> {
    let header = if ll { EPOCHS_LL_HEADER } else { EPOCHS_HEADER };
    let rows = read_csv(path, header, upto, |c| {
        let (e, tr, te, kl, s, test_ll) = match (c, ll) {
            ([e, tr, te, kl, s], false) => (e, tr, te, kl, s, None),
            ([e, tr, te, kl, s, l], true) => (e, tr, te, kl, s, Some(*l)),
            _ => return None,
        };
        let epoch = e.parse().ok()?;
        let test_ll = match test_ll {
            None | Some("") => None,
            Some(v) => Some(v.parse().ok()?),
        };
        Some((
            epoch,
            EpochStats {
                epoch,
                train_elbo: tr.parse().ok()?,
                test_elbo: te.parse().ok()?,
                kl_per_dim: kl.parse().ok()?,
                seconds: s.parse().ok()?,
                test_ll,
            },
        ))
    })?;
    if rows.len() != upto {
        return Err(TrainError::Checkpoint {
            path: path.to_path_buf(),
            msg: format!(
                "{} epochs recorded, the checkpoint is at epoch {upto}",
                rows.len()
            ),
        });
    }
    Ok(rows)
}

pub(crate) fn read_steps(path: &Path, upto: usize) -> Result<Vec<StepRecord>, TrainError> {
    read_csv(path, STEPS_HEADER, upto, |c| {
        let [e, s, n, l] = c else { return None };
        let epoch = e.parse().ok()?;
        Some((
            epoch,
            StepRecord {
                epoch,
                step: s.parse().ok()?,
                images: n.parse().ok()?,
                loss: l.parse().ok()?,
            },
        ))
    })
}
