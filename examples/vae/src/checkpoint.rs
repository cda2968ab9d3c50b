//! The checkpoint of a run: its description (`checkpoint.txt`, the sidecar of the `Svi`
//! checkpoint file), the check that a `--resume` run continues it with the same options and
//! data, and the writing, restoring and pruning of the checkpoint files.

use std::path::Path;

use vi_infer::InferError;

use crate::model::Sizes;
use crate::objective::Objective;
use crate::outputs::{self, Outputs};
use crate::train::{EpochStats, StepRecord, TrainConfig, TrainError};

/// The checkpoint's description: the epoch reached, the `Svi` checkpoint file, and the
/// options it was trained with (so that `--resume` continues the same run).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointMeta {
    /// Epochs done.
    pub epoch: usize,
    /// The run's `--epochs` (what `--resume` trains up to unless told otherwise).
    pub target_epochs: usize,
    /// The `Svi::save` file (parameters, Adam's state, the guide's generator), relative to
    /// the output directory.
    pub file: String,
    /// The run's seed.
    pub seed: u64,
    /// Images per minibatch.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Hidden and latent widths.
    pub sizes: Sizes,
    /// Training images.
    pub train_images: usize,
    /// Test images.
    pub test_images: usize,
    /// The bound trained (`mean-field` when the file predates the option).
    pub objective: Objective,
    /// The `--ll-samples` of the run (`None`: not measured).
    pub ll_samples: Option<usize>,
}

/// The name of the checkpoint's description in the output directory.
pub const CHECKPOINT_META: &str = "checkpoint.txt";

impl CheckpointMeta {
    /// Reads `checkpoint.txt` from `out_dir`.
    ///
    /// ```
    /// let err = vae::checkpoint::CheckpointMeta::read("no-such-dir".as_ref()).unwrap_err();
    /// assert!(err.to_string().contains("checkpoint.txt"));
    /// ```
    pub fn read(out_dir: &Path) -> Result<Self, TrainError> {
        let path = out_dir.join(CHECKPOINT_META);
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::Checkpoint {
            path: path.clone(),
            msg: format!(
                "cannot read it ({e}): --resume needs the output directory of an earlier run"
            ),
        })?;
        let bad = |msg: String| TrainError::Checkpoint {
            path: path.clone(),
            msg,
        };
        let mut fields = std::collections::HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(bad(format!("`{line}` is not `key = value`")));
            };
            fields.insert(k.trim().to_string(), v.trim().to_string());
        }
        fn get_or<T: std::str::FromStr>(
            fields: &std::collections::HashMap<String, String>,
            key: &str,
            default: T,
        ) -> Result<T, String> {
            match fields.get(key) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| format!("`{key} = {v}` is malformed")),
            }
        }
        fn get<T: std::str::FromStr>(
            fields: &std::collections::HashMap<String, String>,
            key: &str,
        ) -> Result<T, String> {
            let v = fields.get(key).ok_or(format!("lacks `{key}`"))?;
            v.parse().map_err(|_| format!("`{key} = {v}` is malformed"))
        }
        let meta = (|| -> Result<Self, String> {
            if get::<u32>(&fields, "format")? != 1 {
                return Err("unknown format (expected `format = 1`)".into());
            }
            Ok(Self {
                epoch: get(&fields, "epoch")?,
                target_epochs: get(&fields, "target_epochs")?,
                file: get(&fields, "file")?,
                seed: get(&fields, "seed")?,
                batch_size: get(&fields, "batch_size")?,
                lr: get(&fields, "lr")?,
                sizes: Sizes {
                    hidden: get(&fields, "hidden")?,
                    latent: get(&fields, "latent")?,
                },
                train_images: get(&fields, "train_images")?,
                test_images: get(&fields, "test_images")?,
                objective: Objective::from_parts(
                    &get_or(&fields, "objective", "mean-field".to_string())?,
                    get_or(&fields, "particles", 1)?,
                )?,
                ll_samples: match get_or(&fields, "ll_samples", 0usize)? {
                    0 => None,
                    k => Some(k),
                },
            })
        })()
        .map_err(bad)?;
        Ok(meta)
    }

    fn to_text(&self) -> String {
        format!(
            "# The checkpoint of a `vae train` run: continue it with\n\
             #   cargo run --release -p vae -- train --resume --out-dir <this directory> --epochs N\n\
             format = 1\nepoch = {}\ntarget_epochs = {}\nfile = {}\nseed = {}\nbatch_size = {}\nlr = {}\n\
             hidden = {}\nlatent = {}\ntrain_images = {}\ntest_images = {}\nobjective = {}\n\
             particles = {}\nll_samples = {}\n",
            self.epoch,
            self.target_epochs,
            self.file,
            self.seed,
            self.batch_size,
            self.lr,
            self.sizes.hidden,
            self.sizes.latent,
            self.train_images,
            self.test_images,
            self.objective.name(),
            self.objective.particles(),
            self.ll_samples.unwrap_or(0)
        )
    }

    /// Whether a run of `cfg` on `train`/`test` images continues this checkpoint; the
    /// mismatches otherwise, as `--option checkpoint-value (this run: value)`.
    fn mismatches(&self, cfg: &TrainConfig, train: usize, test: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |name: &str, saved: String, now: String| {
            if saved != now {
                out.push(format!("{name} {saved} (this run: {now})"));
            }
        };
        check("--seed", self.seed.to_string(), cfg.seed.to_string());
        check(
            "--batch-size",
            self.batch_size.to_string(),
            cfg.batch_size.to_string(),
        );
        check("--lr", self.lr.to_string(), cfg.lr.to_string());
        check(
            "--hidden",
            self.sizes.hidden.to_string(),
            cfg.sizes.hidden.to_string(),
        );
        check(
            "--latent",
            self.sizes.latent.to_string(),
            cfg.sizes.latent.to_string(),
        );
        check(
            "--elbo",
            self.objective.name().to_string(),
            cfg.objective.name().to_string(),
        );
        check(
            "--particles",
            self.objective.particles().to_string(),
            cfg.objective.particles().to_string(),
        );
        check(
            "--ll-samples",
            self.ll_samples.map_or("none".into(), |k| k.to_string()),
            cfg.ll_samples.map_or("none".into(), |k| k.to_string()),
        );
        check(
            "training images",
            self.train_images.to_string(),
            train.to_string(),
        );
        check(
            "test images",
            self.test_images.to_string(),
            test.to_string(),
        );
        out
    }
}

/// Removes the checkpoint files of other epochs (of this run or an earlier one) from
/// `dir`, keeping `keep`. Best effort: a leftover file is harmless.
fn remove_stale_checkpoints(dir: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = name
            .strip_prefix("checkpoint-epoch")
            .and_then(|r| r.strip_suffix(".safetensors"))
            .is_some_and(|n| n.parse::<usize>().is_ok());
        if stale && name != keep {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The checkpoint that `--resume` continues: reads `checkpoint.txt` from `cfg.out_dir` and
/// checks that it was trained with `cfg`'s options on as many training and test images.
pub(crate) fn read_for_resume(
    cfg: &TrainConfig,
    train_images: usize,
    test_images: usize,
    outputs: &Outputs,
) -> Result<CheckpointMeta, TrainError> {
    let meta = CheckpointMeta::read(&cfg.out_dir)?;
    let wrong = meta.mismatches(cfg, train_images, test_images);
    if !wrong.is_empty() {
        return Err(TrainError::Checkpoint {
            path: outputs.checkpoint.clone(),
            msg: format!(
                "trained with {}: resume with the same options and data",
                wrong.join(", ")
            ),
        });
    }
    Ok(meta)
}

/// Restores the state of `meta`'s checkpoint: `load` reads the `Svi` checkpoint file, and
/// the epochs' figures and the steps' losses up to its epoch come from the CSV files.
pub(crate) fn restore(
    cfg: &TrainConfig,
    meta: &CheckpointMeta,
    outputs: &Outputs,
    load: impl FnOnce(&Path) -> Result<(), InferError>,
) -> Result<(Vec<EpochStats>, Vec<StepRecord>), TrainError> {
    let file = cfg.out_dir.join(&meta.file);
    if !file.is_file() {
        return Err(TrainError::Checkpoint {
            path: outputs.checkpoint.clone(),
            msg: format!("names {}, which is missing", file.display()),
        });
    }
    load(&file).map_err(|e| TrainError::Checkpoint {
        path: file.clone(),
        msg: format!("cannot load it ({e})"),
    })?;
    let history = outputs::read_epochs(&outputs.epochs_csv, meta.epoch, meta.ll_samples.is_some())?;
    let steps = outputs::read_steps(&outputs.steps_csv, meta.epoch)?;
    Ok((history, steps))
}

/// Writes the checkpoint of epoch `epoch`: `save` writes the `Svi` checkpoint file (to a
/// temporary name, renamed once complete), then its description is written (atomically)
/// and the previous epochs' files are removed. The description comes last, once everything
/// it describes is on disk.
pub(crate) fn write(
    cfg: &TrainConfig,
    epoch: usize,
    train_images: usize,
    test_images: usize,
    outputs: &Outputs,
    save: impl FnOnce(&Path) -> Result<(), InferError>,
) -> Result<(), TrainError> {
    let file = format!("checkpoint-epoch{epoch}.safetensors");
    let tmp = cfg.out_dir.join(format!("{file}.tmp"));
    save(&tmp)?;
    outputs::rename(&tmp, &cfg.out_dir.join(&file))?;
    let meta = CheckpointMeta {
        epoch,
        target_epochs: cfg.epochs,
        file: file.clone(),
        seed: cfg.seed,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        sizes: cfg.sizes,
        train_images,
        test_images,
        objective: cfg.objective,
        ll_samples: cfg.ll_samples,
    };
    outputs::write_atomic(&outputs.checkpoint, meta.to_text().as_bytes())?;
    remove_stale_checkpoints(&cfg.out_dir, &file);
    Ok(())
}
