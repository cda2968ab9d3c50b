//! The training run end to end on a slice of the bundled data: the loss falls, the outputs
//! are written, and a run stopped after one epoch and resumed from its checkpoint computes
//! the same losses, figures and parameters, bit for bit, as a run that was not stopped.
//! Also: the data and checkpoint errors name their file.

use std::path::{Path, PathBuf};

use vae::data::{DataError, bundled_dir};
use vae::train::{Outcome, TrainConfig, TrainError, train};
use vi_infer::candle::{Device, Tensor};

/// A fresh directory under the system's temp dir for this test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vae-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 512 training images in batches of 64 (8 steps an epoch), 128 test images.
fn small(out: &Path, epochs: usize) -> TrainConfig {
    let mut cfg = TrainConfig::new(bundled_dir(), out);
    cfg.epochs = epochs;
    cfg.batch_size = 64;
    cfg.seed = 3;
    cfg.train_limit = Some(512);
    cfg.test_limit = Some(128);
    cfg.pictures = false;
    cfg
}

fn run(cfg: &TrainConfig) -> Outcome {
    train(cfg, &mut |_| {}).unwrap()
}

/// The tensors of the checkpoint an outcome points at.
fn checkpoint_tensors(o: &Outcome) -> std::collections::HashMap<String, Tensor> {
    let meta =
        vae::checkpoint::CheckpointMeta::read(o.outputs.checkpoint.parent().unwrap()).unwrap();
    let file = o.outputs.checkpoint.with_file_name(&meta.file);
    vi_infer::candle::safetensors::load(file, &Device::Cpu).unwrap()
}

/// A tensor's elements as bit patterns, exactly, whatever its dtype.
fn words(t: &Tensor) -> Vec<u64> {
    use vi_infer::candle::DType;
    let t = t.flatten_all().unwrap();
    match t.dtype() {
        DType::F32 => t
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| u64::from(v.to_bits()))
            .collect(),
        DType::F64 => t
            .to_vec1::<f64>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect(),
        DType::I64 => t
            .to_vec1::<i64>()
            .unwrap()
            .iter()
            .map(|&v| v as u64)
            .collect(),
        DType::U8 => t
            .to_vec1::<u8>()
            .unwrap()
            .iter()
            .map(|&v| u64::from(v))
            .collect(),
        DType::U32 => t
            .to_vec1::<u32>()
            .unwrap()
            .iter()
            .map(|&v| u64::from(v))
            .collect(),
        other => panic!("unexpected dtype {other:?}"),
    }
}

#[test]
fn trains_and_resumes_bit_identically() {
    let (dir_a, dir_b) = (scratch("whole"), scratch("resumed"));

    // Uninterrupted: 3 epochs, with the pictures.
    let mut cfg_a = small(&dir_a, 3);
    cfg_a.pictures = true;
    let a = run(&cfg_a);
    assert_eq!(a.steps.len(), 24);
    assert_eq!(a.history.len(), 3);
    for f in [
        &a.outputs.reconstructions,
        &a.outputs.samples,
        &a.outputs.curve,
        &a.outputs.epochs_csv,
        &a.outputs.steps_csv,
        &a.outputs.checkpoint,
    ] {
        assert!(f.is_file(), "{} missing", f.display());
    }
    // The pictures decode as PNGs of the grids' and the plot's sizes: 8 × 10 and 10 × 10
    // digits at zoom 2 with 2-pixel mid-gray gaps, and the 720 × 440 RGB plot on white.
    for (f, size, color, corner) in [
        (
            &a.outputs.reconstructions,
            (582, 466),
            png::ColorType::Grayscale,
            vec![128],
        ),
        (
            &a.outputs.samples,
            (582, 582),
            png::ColorType::Grayscale,
            vec![128],
        ),
        (
            &a.outputs.curve,
            (720, 440),
            png::ColorType::Rgb,
            vec![255, 255, 255],
        ),
    ] {
        let file = std::io::BufReader::new(std::fs::File::open(f).unwrap());
        let mut reader = png::Decoder::new(file).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), size, "{}", f.display());
        assert_eq!(info.color_type, color, "{}", f.display());
        assert_eq!(buf[..corner.len()], corner[..], "{}", f.display());
    }

    // The loss falls: per image, the last epoch's steps are well below the first epoch's,
    // and the test ELBO rises epoch after epoch.
    let per_image = |epoch: usize| {
        let s: Vec<f64> = a
            .steps
            .iter()
            .filter(|r| r.epoch == epoch)
            .map(|r| r.loss / r.images as f64)
            .collect();
        s.iter().sum::<f64>() / s.len() as f64
    };
    let (first, last) = (per_image(1), per_image(3));
    assert!(
        last < first - 50.0,
        "loss per image {first} (epoch 1) -> {last} (epoch 3)"
    );
    let test: Vec<f64> = a.history.iter().map(|h| h.test_elbo).collect();
    assert!(test.windows(2).all(|w| w[1] > w[0]), "test ELBO {test:?}");
    assert!(a.history.iter().all(|h| h.kl_per_dim > 0.0));

    // Stopped after one epoch, then resumed to three.
    let b1 = run(&small(&dir_b, 1));
    assert_eq!(b1.steps[..], a.steps[..8]);
    let mut resume = small(&dir_b, 3);
    resume.resume = true;
    let b = run(&resume);
    assert_eq!(b.resumed_from, 1);
    let bits = |o: &Outcome| -> Vec<u64> { o.steps.iter().map(|r| r.loss.to_bits()).collect() };
    assert_eq!(bits(&b), bits(&a), "step losses differ after resuming");
    let figures = |o: &Outcome| -> Vec<[u64; 3]> {
        o.history
            .iter()
            .map(|h| {
                [
                    h.train_elbo.to_bits(),
                    h.test_elbo.to_bits(),
                    h.kl_per_dim.to_bits(),
                ]
            })
            .collect()
    };
    assert_eq!(figures(&b), figures(&a));

    // The final checkpoints hold the same parameters, Adam state and generator state.
    let (ta, tb) = (checkpoint_tensors(&a), checkpoint_tensors(&b));
    let mut names: Vec<&String> = ta.keys().collect();
    names.sort();
    assert_eq!(names.len(), tb.len());
    assert!(names.iter().any(|n| n.starts_with("param/encoder.")));
    assert!(names.iter().any(|n| n.starts_with("optim/")));
    for n in names {
        let (x, y) = (&ta[n], &tb[n]);
        assert_eq!(x.dims(), y.dims(), "{n}");
        assert_eq!(words(x), words(y), "{n} differs after resuming");
    }

    // Resuming with another architecture is refused, naming the option.
    let mut wrong = small(&dir_b, 4);
    wrong.resume = true;
    wrong.sizes.hidden = 200;
    let err = train(&wrong, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("--hidden 400 (this run: 200)"), "{err}");

    let _ = std::fs::remove_dir_all(dir_a);
    let _ = std::fs::remove_dir_all(dir_b);
}

#[test]
fn data_and_checkpoint_errors_name_the_file() {
    let dir = scratch("errors");
    // Missing files.
    let cfg = small(&dir.join("out"), 1);
    let mut missing = cfg.clone();
    missing.data_dir = dir.join("nothing-here");
    let err = train(&missing, &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, TrainError::Data(DataError::Read { path, .. })
            if path.ends_with("train-images-idx3-ubyte.gz")),
        "{err}"
    );
    assert!(err.to_string().contains("train-images-idx3-ubyte.gz"));

    // A corrupt file: the labels are not gzip.
    let data = dir.join("corrupt");
    std::fs::create_dir_all(&data).unwrap();
    for f in [
        "train-images-idx3-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(bundled_dir().join(f), data.join(f)).unwrap();
    }
    std::fs::write(data.join("train-labels-idx1-ubyte.gz"), b"not gzip").unwrap();
    let mut corrupt = cfg.clone();
    corrupt.data_dir = data;
    let err = train(&corrupt, &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, TrainError::Data(DataError::Format { path, .. })
            if path.ends_with("train-labels-idx1-ubyte.gz")),
        "{err}"
    );

    // Resuming where there is no checkpoint.
    let mut resume = cfg;
    resume.resume = true;
    let err = train(&resume, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("checkpoint.txt"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `--elbo iwae --particles 3 --ll-samples 10`: the training bound rises, every epoch has a
/// test log-likelihood (above its test ELBO: more samples, a tighter bound), the CSV carries
/// the column, and a run resumed from its first epoch gives the same figures bit for bit;
/// resuming with another objective is refused.
#[test]
fn iwae_with_test_log_likelihood_trains_and_resumes() {
    use vae::objective::Objective;
    let (dir_a, dir_b) = (scratch("iwae-whole"), scratch("iwae-resumed"));
    let iwae = |out: &Path, epochs| {
        let mut cfg = small(out, epochs);
        cfg.objective = Objective::Iwae { particles: 3 };
        cfg.ll_samples = Some(10);
        cfg
    };
    let a = run(&iwae(&dir_a, 2));
    assert_eq!(a.history.len(), 2);
    let bound: Vec<f64> = a.history.iter().map(|h| h.train_elbo).collect();
    assert!(bound[1] > bound[0] + 10.0, "train IWAE {bound:?}");
    for h in &a.history {
        let ll = h.test_ll.expect("a test log-likelihood");
        assert!(
            ll > h.test_elbo,
            "epoch {}: LL {ll} vs ELBO {}",
            h.epoch,
            h.test_elbo
        );
    }
    let csv = std::fs::read_to_string(&a.outputs.epochs_csv).unwrap();
    assert!(
        csv.starts_with("epoch,train_elbo,test_elbo,kl_per_dim,seconds,test_ll\n"),
        "{csv}"
    );

    run(&iwae(&dir_b, 1));
    let mut resume = iwae(&dir_b, 2);
    resume.resume = true;
    let b = run(&resume);
    let bits = |o: &Outcome| -> Vec<[u64; 3]> {
        o.history
            .iter()
            .map(|h| {
                [
                    h.train_elbo.to_bits(),
                    h.test_elbo.to_bits(),
                    h.test_ll.unwrap().to_bits(),
                ]
            })
            .collect()
    };
    assert_eq!(bits(&b), bits(&a));

    let mut wrong = small(&dir_b, 3);
    wrong.resume = true;
    wrong.ll_samples = Some(10);
    let err = train(&wrong, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("--elbo iwae (this run: mean-field)"), "{err}");
    let _ = std::fs::remove_dir_all(dir_a);
    let _ = std::fs::remove_dir_all(dir_b);
}

/// The test log-likelihood of a trained checkpoint (`vae evaluate`): with one importance
/// sample it is the test ELBO within Monte Carlo error (the same bound, its KL estimated
/// from the draw rather than in closed form), and it rises with the number of samples.
#[test]
fn test_log_likelihood_is_the_test_elbo_at_k1_and_rises_with_k() {
    let dir = scratch("evaluate");
    let mut cfg = small(&dir, 2);
    cfg.train_limit = Some(1024);
    let trained = run(&cfg);
    let elbo_128 = trained.history.last().unwrap().test_elbo;
    let eval = |k: usize| {
        vae::evaluate::evaluate_checkpoint(&dir, &bundled_dir(), k, Some(1000), &Device::Cpu)
            .unwrap()
    };
    let e1 = eval(1);
    assert_eq!((e1.epoch, e1.images), (2, 1000));
    // The training run's test ELBO (its first 128 images) is the checkpoint's, measured the
    // same way.
    let e_small =
        vae::evaluate::evaluate_checkpoint(&dir, &bundled_dir(), 1, None, &Device::Cpu).unwrap();
    assert_eq!(e_small.test_elbo, elbo_128);
    // One sample: KL(q ‖ p) of 50 dims estimated from one draw has a standard deviation of a
    // few nats per image; over 1000 images, a standard error near 0.15.
    assert!(
        (e1.test_ll - e1.test_elbo).abs() < 0.6,
        "K = 1: LL {} vs ELBO {}",
        e1.test_ll,
        e1.test_elbo
    );
    let (e10, e100) = (eval(10), eval(100));
    assert!(
        // Measured: +1.3 and +0.25 nats (2000 images), where the standard errors of the
        // differences are a few hundredths.
        e10.test_ll > e1.test_ll + 0.5 && e100.test_ll > e10.test_ll + 0.1,
        "LL by K: {} (1), {} (10), {} (100)",
        e1.test_ll,
        e10.test_ll,
        e100.test_ll
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `--distributed` in a world of one (`SingleProcess`): each step's batch goes to the model
/// and the guide as indices into the training images (`Vae::model_indexed`, a plate
/// subsampled by indices of its own, scaled back to the batch's sum) through
/// `Svi::data_parallel`: the same losses as the plain run, step by step.
#[test]
fn distributed_world_of_one_is_the_plain_run() {
    use std::sync::Arc;
    use vi_infer::parallel::SingleProcess;
    let plain = run(&small(&scratch("dp-plain"), 1));
    let mut cfg = small(&scratch("dp-world"), 1);
    cfg.communicator = Some(Arc::new(SingleProcess));
    let world = run(&cfg);
    assert_eq!(plain.steps.len(), 8);
    assert_eq!(world.steps.len(), plain.steps.len());
    for (a, b) in plain.steps.iter().zip(&world.steps) {
        assert_eq!((a.step, a.images), (b.step, b.images));
        assert!(
            (a.loss - b.loss).abs() <= 1e-6 * a.loss.abs(),
            "step {}: {} plain, {} data-parallel",
            a.step,
            a.loss,
            b.loss
        );
    }
    assert!(world.outputs.checkpoint.exists());
}
