//! What a run trains: the ELBO of Pyro's tutorial (analytic KL), or the importance-weighted
//! bound (IWAE, Burda et al. 2015) with `K` importance samples per image.

use std::fmt;

use vi_infer::{Elbo, ElboOutput, ParamStore, Program, RenyiElbo, TraceMeanFieldElbo};

/// The bound a run maximises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// The ELBO with the KL of `z` in closed form, one draw per image
    /// (`TraceMeanFieldElbo`, as Pyro's tutorial).
    MeanField,
    /// The importance-weighted bound `log 1/K Σ_k p(x, z_k) / q(z_k | x)` per image, the `K`
    /// draws at once (`RenyiElbo` with `alpha = 0`, vectorised particles).
    Iwae {
        /// Importance samples per image (at least 2).
        particles: usize,
    },
}

impl Objective {
    /// Its name on the command line and in the checkpoint: `mean-field` or `iwae`.
    ///
    /// ```
    /// use vae::objective::Objective;
    /// assert_eq!(Objective::Iwae { particles: 5 }.name(), "iwae");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Objective::MeanField => "mean-field",
            Objective::Iwae { .. } => "iwae",
        }
    }

    /// Importance samples per image (1 for the ELBO).
    ///
    /// ```
    /// assert_eq!(vae::objective::Objective::MeanField.particles(), 1);
    /// ```
    pub fn particles(&self) -> usize {
        match self {
            Objective::MeanField => 1,
            Objective::Iwae { particles } => *particles,
        }
    }

    /// The objective named `name` with `particles` samples: `mean-field` takes 1 only,
    /// `iwae` at least 2.
    ///
    /// ```
    /// use vae::objective::Objective;
    /// assert_eq!(Objective::from_parts("iwae", 5), Ok(Objective::Iwae { particles: 5 }));
    /// assert!(Objective::from_parts("iwae", 1).is_err());
    /// assert!(Objective::from_parts("mean-field", 3).is_err());
    /// ```
    pub fn from_parts(name: &str, particles: usize) -> Result<Self, String> {
        match (name, particles) {
            ("mean-field", 1) => Ok(Objective::MeanField),
            ("mean-field", k) => Err(format!(
                "--particles {k}: the mean-field ELBO draws one z per image (--particles \
                 applies to --elbo iwae)"
            )),
            ("iwae", k) if k >= 2 => Ok(Objective::Iwae { particles: k }),
            ("iwae", k) => Err(format!(
                "--particles {k}: the importance-weighted bound needs at least 2 (with 1 it is \
                 the ELBO: --elbo mean-field)"
            )),
            (other, _) => Err(format!("unknown objective `{other}` (mean-field or iwae)")),
        }
    }

    /// The ELBO that computes it.
    ///
    /// ```
    /// let elbo = vae::objective::Objective::Iwae { particles: 5 }.elbo()?;
    /// # Ok::<(), vi_infer::InferError>(())
    /// ```
    pub fn elbo(&self) -> vi_infer::Result<ObjectiveElbo> {
        Ok(match self {
            Objective::MeanField => ObjectiveElbo::MeanField(TraceMeanFieldElbo::new()),
            Objective::Iwae { particles } => ObjectiveElbo::Iwae(
                RenyiElbo::new(0.0)?
                    .num_particles(*particles)
                    .vectorize_particles(true)
                    // The VAE's one plate, `data`: the particles go to dim −2.
                    .max_plate_nesting(1),
            ),
        })
    }
}

impl fmt::Display for Objective {
    /// `TraceMeanFieldElbo` or `IWAE (K = 5)`.
    ///
    /// ```
    /// assert_eq!(vae::objective::Objective::Iwae { particles: 5 }.to_string(), "IWAE (K = 5)");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Objective::MeanField => write!(f, "TraceMeanFieldElbo"),
            Objective::Iwae { particles } => write!(f, "IWAE (K = {particles})"),
        }
    }
}

/// The ELBO of an [`Objective`], for `Svi`.
#[derive(Clone, Debug)]
pub enum ObjectiveElbo {
    /// [`Objective::MeanField`].
    MeanField(TraceMeanFieldElbo),
    /// [`Objective::Iwae`].
    Iwae(RenyiElbo),
}

impl Elbo for ObjectiveElbo {
    fn compute(
        &self,
        model: &mut Program<'_>,
        guide: &mut Program<'_>,
        store: &mut ParamStore,
        rng: &mut dyn rand::RngCore,
    ) -> vi_infer::Result<ElboOutput> {
        match self {
            ObjectiveElbo::MeanField(e) => e.compute(model, guide, store, rng),
            ObjectiveElbo::Iwae(e) => e.compute(model, guide, store, rng),
        }
    }
}
