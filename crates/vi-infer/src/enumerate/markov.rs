//! `markov`: the steps of a chain, each seeing only the last few, so that enumeration can
//! recycle their dims (Pyro's `MarkovMessenger`).

use std::collections::VecDeque;

use crate::error::Result;
use crate::message::{Message, SiteKind};
use crate::messenger::Messenger;

/// The handler behind [`Ctx::markov`](crate::Ctx::markov): each sample site inside is told
/// which sites it can see (those of the current step and of the `history` steps before it),
/// so that an enumerating handler gives it a dim none of those use, and a chain of `T`
/// enumerated steps needs `history + 1` dims, not `T`. Outside enumeration it changes
/// nothing.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::Bernoulli;
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// use vi_infer::handlers::EnumMessenger;
/// let p = Tensor::new(0.5f64, &dev)?;
/// let ((), tr) = ctx.trace(|ctx| {
///     ctx.with(EnumMessenger::new(-1)?, |ctx| {
///         ctx.markov(0..4, |ctx, t| ctx.sample_enum(&format!("x{t}"), Bernoulli::from_probs(&p)?))
///     })?;
///     Ok(())
/// })?;
/// let dims: Vec<isize> = (0..4).map(|t| tr.get(&format!("x{t}")).unwrap().infer.enum_dim.unwrap()).collect();
/// assert_eq!(dims, [-1, -2, -1, -2]); // two dims for the whole chain
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MarkovMessenger {
    history: usize,
    /// The sites of the open steps, oldest first (the last `history + 1`).
    steps: VecDeque<Vec<String>>,
}

impl MarkovMessenger {
    /// A chain whose steps see the `history` steps before them, with its first step open.
    ///
    /// ```
    /// let _m = vi_infer::handlers::MarkovMessenger::new(1);
    /// ```
    pub fn new(history: usize) -> Self {
        let mut steps = VecDeque::with_capacity(history + 1);
        steps.push_back(Vec::new());
        Self { history, steps }
    }

    /// Opens the next step (the one `history + 1` back leaves the window).
    pub(crate) fn next_step(&mut self) {
        self.steps.push_back(Vec::new());
        while self.steps.len() > self.history + 1 {
            self.steps.pop_front();
        }
    }
}

impl Messenger for MarkovMessenger {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.kind != SiteKind::Sample {
            return Ok(());
        }
        let scope = msg.infer.markov_scope.get_or_insert_with(Vec::new);
        for name in self.steps.iter().flatten() {
            match scope.iter_mut().find(|(n, _)| n == name) {
                Some((_, count)) => *count += 1,
                None => scope.push((name.clone(), 1)),
            }
        }
        msg.infer.markov_depth += 1;
        if let Some(last) = self.steps.back_mut() {
            last.push(msg.name.clone());
        }
        Ok(())
    }
}
