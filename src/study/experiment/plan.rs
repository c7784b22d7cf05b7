//! What an experiment runs: the methods and the plan (patients, Ks and draws, the step budget).

use crate::baselines::simclr::PretrainConfig;
use crate::error::{Error, Result};
use crate::heads::HeadKind;
use crate::train::shuffle;

/// A method of the study: SAM with boxes, a head on the frozen encoder, or a UNet baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// SAM with ground-truth boxes, no training.
    SamBox,
    Head(HeadKind),
    /// The AutoSAM head with augmented views of its slices added.
    AutoSamAug,
    UNet,
    UNetSimclr,
}

impl Method {
    /// In the order methods run, and are listed and plotted.
    pub const ALL: [Method; 7] = [
        Self::SamBox,
        Self::Head(HeadKind::AutoSam),
        Self::Head(HeadKind::Cnn),
        Self::Head(HeadKind::Linear),
        Self::AutoSamAug,
        Self::UNet,
        Self::UNetSimclr,
    ];

    /// The name `--methods` takes.
    pub fn key(self) -> &'static str {
        match self {
            Self::SamBox => "sam-box",
            Self::Head(kind) => kind.as_str(),
            Self::AutoSamAug => "autosam-aug",
            Self::UNet => "unet",
            Self::UNetSimclr => "unet-simclr",
        }
    }

    /// The name tables, plots and the CSV use.
    pub fn label(self) -> &'static str {
        match self {
            Self::SamBox => "SAM (box) zero-shot",
            Self::Head(HeadKind::AutoSam) => "AutoSAM",
            Self::Head(HeadKind::Cnn) => "CNN head",
            Self::Head(HeadKind::Linear) => "linear head",
            Self::AutoSamAug => "AutoSAM + aug. views",
            Self::UNet => "UNet (scratch)",
            Self::UNetSimclr => "UNet + SimCLR",
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.label() == label)
    }

    /// Where it is listed.
    pub fn rank(self) -> usize {
        Self::ALL.iter().position(|m| *m == self).unwrap_or(0)
    }
}

impl std::str::FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|m| m.key() == s).ok_or_else(|| {
            let keys: Vec<&str> = Self::ALL.iter().map(|m| m.key()).collect();
            Error::Invalid(format!("unknown method `{s}`: use {}", keys.join(", ")))
        })
    }
}

/// How long each run trains: the same number of mini-batches for every method and K, or
/// passes over its own training slices (the paper's 120 epochs: more steps for a larger K).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Steps(usize),
    Epochs(usize),
}

impl Budget {
    /// Mini-batches of `batch` over `slices` training slices.
    pub fn steps(self, slices: usize, batch: usize) -> usize {
        match self {
            Self::Steps(n) => n,
            Self::Epochs(e) => e * slices.div_ceil(batch.max(1)),
        }
    }

    pub fn epochs(self) -> Option<usize> {
        match self {
            Self::Steps(_) => None,
            Self::Epochs(e) => Some(e),
        }
    }

    /// As the tables say it: "300 mini-batches", "120 epochs".
    pub fn describe(self) -> String {
        match self {
            Self::Steps(n) => format!("{n} mini-batches"),
            Self::Epochs(e) => format!("{e} epochs (passes over its training slices)"),
        }
    }
}

/// How big a study: `full` for docs/, `quick` for CI.
pub struct Plan {
    /// Patients the labelled ones are drawn from.
    pub pool: Vec<String>,
    /// Every labelled patient outside the test set: a K beyond the pool draws from these, and
    /// `--ks all` takes them all.
    pub development: Vec<String>,
    /// Held-out patients scored by every method.
    pub test: Vec<String>,
    /// Patients whose images (no labels) SimCLR pretrains on; never the test patients.
    pub unlabelled: Vec<String>,
    /// (K, draws)
    pub ks: Vec<(usize, usize)>,
    /// How long every run trains.
    pub budget: Budget,
    pub simclr: PretrainConfig,
    /// Ks at which AutoSAM is also trained with augmented views added, and how many per slice.
    pub aug_ks: Vec<usize>,
    pub aug_views: usize,
    /// The methods to run; all when empty. A converged run can then be made in parts (a few Ks
    /// and methods at a time) and each part's rows read side by side.
    pub methods: Vec<Method>,
}

fn patients(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("patient{i:03}")).collect()
}

impl Plan {
    pub fn runs(&self, method: Method) -> bool {
        self.methods.is_empty() || self.methods.contains(&method)
    }

    /// The labelled patients of each of `draws` draws of `k` from the pool (from every
    /// development patient where K exceeds the pool): draw d is the pool
    /// shuffled with seed `k * 1000 + d`, reshuffled with a further seed while it would repeat
    /// an earlier draw's set, so that several draws measure several patient sets wherever the
    /// pool has that many.
    pub fn draws(&self, k: usize, draws: usize) -> Vec<Vec<String>> {
        const RESEEDS: u64 = 64;
        let from = if k > self.pool.len() {
            &self.development
        } else {
            &self.pool
        };
        let mut sets: Vec<Vec<String>> = Vec::with_capacity(draws);
        for draw in 0..draws {
            let pick = |retry: u64| {
                let mut pool = from.clone();
                shuffle(&mut pool, (k * 1000 + draw) as u64 + retry * 100_000);
                pool.truncate(k);
                pool
            };
            let sorted = |set: &[String]| {
                let mut s = set.to_vec();
                s.sort();
                s
            };
            let fresh = |set: &[String]| sets.iter().all(|s| sorted(s) != sorted(set));
            let set = (0..RESEEDS)
                .map(pick)
                .find(|set| fresh(set))
                .unwrap_or_else(|| pick(0));
            sets.push(set);
        }
        sets
    }

    /// Keeps the Ks and methods named (`1:2,8:1` gives K and draws; an empty list keeps all).
    pub fn select(&mut self, ks: &[(usize, usize)], methods: &[Method]) -> Result<()> {
        let all = self.development.len();
        if let Some(&(k, _)) = ks.iter().find(|&&(k, _)| k != ALL && k > all) {
            return Err(Error::Invalid(format!(
                "K = {k}: the plan has {all} development patients (`--ks all` takes them all)"
            )));
        }
        if !ks.is_empty() {
            self.ks = ks
                .iter()
                .map(|&(k, draws)| (if k == ALL { all } else { k }, draws))
                .collect();
        }
        self.methods = methods.to_vec();
        Ok(())
    }

    /// The patients the plan's runs read: those its draws may take, and the test patients.
    pub fn labelled(&self) -> Vec<String> {
        let beyond_pool = self.ks.iter().any(|&(k, _)| k > self.pool.len());
        let mut all = if beyond_pool {
            self.development.clone()
        } else {
            self.pool.clone()
        };
        all.extend(self.test.iter().cloned());
        all
    }

    pub fn full() -> Self {
        Self {
            pool: patients(1..=20),
            development: patients(1..=44),
            test: patients(45..=50),
            unlabelled: patients(1..=40),
            ks: vec![(1, 2), (2, 1), (4, 1), (8, 1)],
            budget: Budget::Steps(30),
            simclr: PretrainConfig {
                steps: 80,
                ..PretrainConfig::default()
            },
            aug_ks: vec![1],
            methods: Vec::new(),
            aug_views: 2,
        }
    }

    pub fn quick() -> Self {
        Self {
            pool: patients(1..=1),
            development: patients(1..=1),
            test: patients(2..=2),
            unlabelled: patients(1..=1),
            ks: vec![(1, 1)],
            budget: Budget::Steps(2),
            simclr: PretrainConfig {
                steps: 2,
                batch_size: 4,
                view_size: 64,
                ..PretrainConfig::default()
            },
            aug_ks: vec![1],
            methods: Vec::new(),
            aug_views: 1,
        }
    }
}

/// One training run the plan asks for: a method on one draw of K patients.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub method: Method,
    pub k: usize,
    pub draw: usize,
    pub patients: Vec<String>,
}

impl Job {
    /// The name of its checkpoint's folder.
    pub fn key(&self) -> String {
        format!("{}-k{}-d{}", self.method.key(), self.k, self.draw)
    }
}

impl Plan {
    /// The training runs of the plan (SAM with boxes trains nothing) by K, draw and then
    /// [`Method::ALL`]'s order, except that the runs `in_progress` (a checkpoint waits) come
    /// first: a part goes on with a run it stopped before it starts one that may take a day.
    pub fn jobs(&self, in_progress: impl Fn(&Job) -> bool) -> Vec<Job> {
        let mut jobs: Vec<Job> = Vec::new();
        for &(k, draws) in &self.ks {
            for (draw, patients) in self.draws(k, draws).into_iter().enumerate() {
                let trained = Method::ALL.into_iter().filter(|&m| {
                    m != Method::SamBox
                        && self.runs(m)
                        && (m != Method::AutoSamAug || self.aug_ks.contains(&k))
                });
                jobs.extend(trained.map(|method| Job {
                    method,
                    k,
                    draw,
                    patients: patients.clone(),
                }));
            }
        }
        // Stable: the runs in progress keep the plan's order among themselves, as do the rest.
        jobs.sort_by_key(|job| !in_progress(job));
        jobs
    }
}

/// K as `all` in `--ks`: every development patient ([`Plan::select`] makes it their number).
pub const ALL: usize = usize::MAX;

/// `K:draws` (or `K`, one draw; K may be `all`), as `experiment --ks` takes them.
pub fn parse_k(s: &str) -> Result<(usize, usize)> {
    let bad = |why: String| Error::Invalid(format!("`{s}`: {why}"));
    let (k, draws) = s.split_once(':').unwrap_or((s, "1"));
    let n = |v: &str| v.trim().parse::<usize>().map_err(|e| bad(e.to_string()));
    let k = if k.trim() == "all" { Ok(ALL) } else { n(k) };
    match (k?, n(draws)?) {
        (0, _) | (_, 0) => Err(bad("K and draws start at 1".into())),
        pair => Ok(pair),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_read_back_from_their_keys_and_labels() {
        for m in Method::ALL {
            assert_eq!(m.key().parse::<Method>().unwrap(), m);
            assert_eq!(Method::from_label(m.label()), Some(m));
        }
        assert!("resnet".parse::<Method>().is_err());
        assert_eq!(parse_k("8").unwrap(), (8, 1));
        assert_eq!(parse_k("1:3").unwrap(), (1, 3));
        assert!(parse_k("0:2").is_err() && parse_k("x").is_err());
        assert_eq!(parse_k("all").unwrap(), (ALL, 1));
    }

    #[test]
    fn draws_are_distinct_sets_where_the_pool_allows() {
        let mut plan = Plan::full();
        for (k, draws) in [(1, 3), (2, 3), (4, 3)] {
            let sets = plan.draws(k, draws);
            assert!(sets.iter().all(|s| s.len() == k));
            for (i, a) in sets.iter().enumerate() {
                for b in &sets[..i] {
                    let (mut a, mut b) = (a.clone(), b.clone());
                    a.sort();
                    b.sort();
                    assert_ne!(a, b, "K={k}: a draw repeats an earlier one");
                }
            }
        }
        // Seed 1002 alone gives patient006 again, as draw 0 did: the runs already recorded
        // keep their patients, and the third draw moves on.
        let sets = plan.draws(1, 3);
        assert_eq!(sets[0], ["patient006"]);
        assert_eq!(sets[1], ["patient012"]);
        assert_ne!(sets[2], ["patient006"]);
        let pairs = plan.draws(2, 3);
        assert_eq!(
            pairs[..2],
            [["patient004", "patient018"], ["patient019", "patient011"]]
        );
        // Beyond the pool, K draws from every development patient; `all` takes them all, and
        // the runs then read them all.
        assert!(
            plan.draws(30, 1)[0]
                .iter()
                .any(|p| p.as_str() > "patient020")
        );
        assert!(plan.select(&[(45, 1)], &[]).is_err());
        plan.select(&[(ALL, 1)], &[]).unwrap();
        assert_eq!(plan.ks, [(44, 1)]);
        let mut every = plan.draws(44, 1).remove(0);
        every.sort();
        assert_eq!(every, plan.development);
        assert_eq!(plan.labelled().len(), 44 + 6);
        // A pool of one: every draw is that patient.
        plan.pool.truncate(1);
        assert_eq!(plan.draws(1, 2), vec![vec!["patient001".to_string()]; 2]);
    }

    #[test]
    fn runs_in_progress_go_first_and_the_rest_keep_the_plan_order() {
        let autosam = Method::Head(HeadKind::AutoSam);
        let mut plan = Plan::full();
        plan.select(&[(1, 2), (ALL, 1)], &[Method::UNetSimclr, autosam])
            .unwrap();
        let order = |jobs: Vec<Job>| -> Vec<String> { jobs.iter().map(Job::key).collect() };
        let planned = order(plan.jobs(|_| false));
        assert_eq!(
            planned,
            [
                "autosam-k1-d0",
                "unet-simclr-k1-d0",
                "autosam-k1-d1",
                "unet-simclr-k1-d1",
                "autosam-k44-d0",
                "unet-simclr-k44-d0",
            ]
        );
        let resumed = order(plan.jobs(|j| j.method == Method::UNetSimclr && j.k == 44));
        assert_eq!(resumed[0], "unet-simclr-k44-d0");
        assert_eq!(resumed[1..], planned[..5]);
        // Every method but SAM with boxes trains; AutoSAM with views only at the plan's aug_ks.
        plan.select(&[(1, 1), (2, 1)], &[]).unwrap();
        let all = plan.jobs(|_| false);
        assert_eq!(all.len(), 2 * (Method::ALL.len() - 1) - 1);
        assert!(all.iter().all(|j| j.method != Method::SamBox));
        let with_views = all.iter().filter(|j| j.method == Method::AutoSamAug);
        assert!(with_views.map(|j| j.k).eq([1]));
    }

    #[test]
    fn an_epoch_budget_gives_larger_ks_more_steps() {
        // One patient's 18 slices in batches of 4: 5 mini-batches a pass.
        assert_eq!(Budget::Epochs(120).steps(18, 4), 600);
        assert_eq!(Budget::Epochs(120).steps(36, 4), 1080);
        assert_eq!(Budget::Steps(300).steps(18, 4), 300);
        assert_eq!(Budget::Steps(300).epochs(), None);
    }
}
