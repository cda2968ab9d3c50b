//! Checkpoint files: safetensors written beside the target and renamed over it (a crash or a
//! full disk leaves the last good file), read back with errors that name the file, and the
//! constraints of parameters encoded as tensors so that they travel with the values.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use vi_dist::{Bound, Constraint};

use crate::error::{InferError, Result};

fn io_error(path: &Path, source: std::io::Error) -> InferError {
    InferError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `tensors` to `path` as safetensors: first to a temporary file in the same directory,
/// then renamed over `path`, so that `path` holds either the old file or the whole new one.
pub(crate) fn save(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io_error(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = candle_core::safetensors::save(tensors, &tmp).map_err(|e| match e {
        candle_core::Error::Io(source) => io_error(path, source),
        other => io_error(path, std::io::Error::other(other.to_string())),
    });
    let renamed = written.and_then(|()| std::fs::rename(&tmp, path).map_err(|e| io_error(path, e)));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// Reads a safetensors file onto `device`. A missing, empty, truncated or garbage file is
/// [`InferError::Io`] naming the file.
pub(crate) fn load(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    if meta.len() == 0 {
        return Err(io_error(
            path,
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the checkpoint is empty (0 bytes)",
            ),
        ));
    }
    candle_core::safetensors::load(path, device).map_err(|e| match e {
        candle_core::Error::Io(source) => io_error(path, source),
        other => io_error(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a readable safetensors checkpoint ({other})"),
            ),
        ),
    })
}

/// The name under which a parameter's constraint is stored beside its value.
pub(crate) const CONSTRAINT_PREFIX: &str = "__constraint__/";

/// A constraint as a text (bounds that are tensors written `#k`) and its tensor bounds.
pub(crate) fn encode(c: &Constraint) -> Result<(String, Vec<Tensor>)> {
    let mut tensors = Vec::new();
    let text = encode_into(c, &mut tensors)?;
    Ok((text, tensors))
}

fn encode_bound(b: &Bound, tensors: &mut Vec<Tensor>) -> String {
    match b {
        Bound::Scalar(v) => format!("{v:?}"),
        Bound::Tensor(t) => {
            tensors.push(t.clone());
            format!("#{}", tensors.len() - 1)
        }
    }
}

fn encode_into(c: &Constraint, tensors: &mut Vec<Tensor>) -> Result<String> {
    use Constraint::*;
    let two = |name: &str, low: &Bound, high: &Bound, tensors: &mut Vec<Tensor>| {
        let l = encode_bound(low, tensors);
        let h = encode_bound(high, tensors);
        format!("{name}({l},{h})")
    };
    Ok(match c {
        Real => "real".into(),
        Positive => "positive".into(),
        NonNegative => "nonnegative".into(),
        UnitInterval => "unit_interval".into(),
        Boolean => "boolean".into(),
        NonNegativeInteger => "nonnegative_integer".into(),
        Simplex => "simplex".into(),
        OneHot => "one_hot".into(),
        LowerCholesky => "lower_cholesky".into(),
        PositiveDefinite => "positive_definite".into(),
        Interval { low, high } => two("interval", low, high, tensors),
        HalfOpenInterval { low, high } => two("half_open_interval", low, high, tensors),
        IntegerInterval { low, high } => two("integer_interval", low, high, tensors),
        GreaterThan(b) => format!("greater_than({})", encode_bound(b, tensors)),
        GreaterThanEq(b) => format!("greater_than_eq({})", encode_bound(b, tensors)),
        LessThan(b) => format!("less_than({})", encode_bound(b, tensors)),
        Independent { base, event_dims } => {
            format!("independent({event_dims},{})", encode_into(base, tensors)?)
        }
        other => {
            return Err(InferError::Invalid(format!(
                "constraint {other} cannot be written to a checkpoint"
            )));
        }
    })
}

/// The inverse of [`encode`].
pub(crate) fn decode(text: &str, tensors: &[Tensor]) -> Option<Constraint> {
    let mut p = Parser { s: text, tensors };
    let c = p.constraint()?;
    p.s.is_empty().then_some(c)
}

struct Parser<'a> {
    s: &'a str,
    tensors: &'a [Tensor],
}

impl Parser<'_> {
    fn eat(&mut self, token: &str) -> Option<()> {
        self.s = self.s.strip_prefix(token)?;
        Some(())
    }

    fn word(&mut self) -> &str {
        let end = self
            .s
            .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .unwrap_or(self.s.len());
        let (w, rest) = self.s.split_at(end);
        self.s = rest;
        w
    }

    fn bound(&mut self) -> Option<Bound> {
        let end = self.s.find([',', ')']).unwrap_or(self.s.len());
        let (tok, rest) = self.s.split_at(end);
        self.s = rest;
        match tok.strip_prefix('#') {
            Some(k) => Some(Bound::Tensor(
                self.tensors.get(k.parse::<usize>().ok()?)?.clone(),
            )),
            None => Some(Bound::Scalar(tok.parse().ok()?)),
        }
    }

    fn pair(&mut self) -> Option<(Bound, Bound)> {
        self.eat("(")?;
        let low = self.bound()?;
        self.eat(",")?;
        let high = self.bound()?;
        self.eat(")")?;
        Some((low, high))
    }

    fn one(&mut self) -> Option<Bound> {
        self.eat("(")?;
        let b = self.bound()?;
        self.eat(")")?;
        Some(b)
    }

    fn constraint(&mut self) -> Option<Constraint> {
        use Constraint::*;
        Some(match self.word() {
            "real" => Real,
            "positive" => Positive,
            "nonnegative" => NonNegative,
            "unit_interval" => UnitInterval,
            "boolean" => Boolean,
            "nonnegative_integer" => NonNegativeInteger,
            "simplex" => Simplex,
            "one_hot" => OneHot,
            "lower_cholesky" => LowerCholesky,
            "positive_definite" => PositiveDefinite,
            "interval" => {
                let (low, high) = self.pair()?;
                Interval { low, high }
            }
            "half_open_interval" => {
                let (low, high) = self.pair()?;
                HalfOpenInterval { low, high }
            }
            "integer_interval" => {
                let (low, high) = self.pair()?;
                IntegerInterval { low, high }
            }
            "greater_than" => GreaterThan(self.one()?),
            "greater_than_eq" => GreaterThanEq(self.one()?),
            "less_than" => LessThan(self.one()?),
            "independent" => {
                self.eat("(")?;
                let end = self.s.find(',')?;
                let event_dims = self.s[..end].parse().ok()?;
                self.s = &self.s[end + 1..];
                let base = Box::new(self.constraint()?);
                self.eat(")")?;
                Independent { base, event_dims }
            }
            _ => return None,
        })
    }
}

/// The records of one parameter's constraint: the text as a u8 tensor under
/// `CONSTRAINT_PREFIX + name`, and each tensor bound under `… + name + "#k"`.
pub(crate) fn constraint_records(name: &str, c: &Constraint) -> Result<Vec<(String, Tensor)>> {
    let (text, bounds) = encode(c)?;
    let key = format!("{CONSTRAINT_PREFIX}{name}");
    let bytes = text.into_bytes();
    let n = bytes.len();
    let mut out = vec![(key.clone(), Tensor::from_vec(bytes, n, &Device::Cpu)?)];
    for (k, b) in bounds.into_iter().enumerate() {
        out.push((format!("{key}#{k}"), b));
    }
    Ok(out)
}

/// Splits the constraint records off a checkpoint's tensors: the parameters' values, and each
/// parameter's constraint.
pub(crate) fn split_constraints(
    tensors: &HashMap<String, Tensor>,
) -> Result<(HashMap<String, Tensor>, HashMap<String, Constraint>)> {
    let mut values = HashMap::new();
    let mut constraints = HashMap::new();
    for (k, v) in tensors {
        let Some(rest) = k.strip_prefix(CONSTRAINT_PREFIX) else {
            values.insert(k.clone(), v.clone());
            continue;
        };
        if rest.contains('#') {
            continue; // a bound, read with its constraint
        }
        let bytes: Vec<u8> = v.to_dtype(DType::U8)?.flatten_all()?.to_vec1()?;
        let text = String::from_utf8(bytes).map_err(|_| {
            InferError::Invalid(format!(
                "checkpoint: the constraint of `{rest}` is not text"
            ))
        })?;
        let mut bounds = Vec::new();
        while let Some(b) = tensors.get(&format!("{k}#{}", bounds.len())) {
            bounds.push(b.clone());
        }
        let c = decode(&text, &bounds).ok_or_else(|| {
            InferError::Invalid(format!(
                "checkpoint: the constraint `{text}` of `{rest}` cannot be read"
            ))
        })?;
        constraints.insert(rest.to_string(), c);
    }
    Ok((values, constraints))
}
