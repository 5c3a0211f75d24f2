//! Test personas: deliberate misbehaviour to exercise the kernel's error and
//! failover paths.
//!
//! Each delivered request draws from a PRNG seeded with
//! `(seed, opcode, msg_id, delivery number)`, so a run is reproducible from
//! its `--seed` regardless of thread scheduling; a request delivered again
//! after a `restore` gets a fresh draw (and so can eventually succeed).

use std::fmt;
use std::time::Duration;

use crate::proto::{OP_OPEN, OP_READ};

/// One misbehaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persona {
    /// Fail OPEN with `copen id,-EIO`.
    OpenError,
    /// Complete READ without writing data.
    ReadError,
    /// Same as `ReadError`, under the name used by the kernel tests.
    NoData,
    /// Close the anonymous fd before `copen`.
    CloseEarly,
    /// Sleep before answering OPEN or READ.
    Delay(Duration),
    /// Read OPEN/READ requests and never answer them.
    Drop,
    /// Write `restore` to the devnode after handling a request.
    RandomRestore,
    /// A random mix of all of the above.
    Chaos,
}

impl Persona {
    /// Parses one persona name (`delay:MS` takes milliseconds).
    pub fn parse(s: &str) -> Result<Persona, String> {
        let s = s.trim();
        Ok(match s {
            "open-error" => Persona::OpenError,
            "read-error" => Persona::ReadError,
            "no-data" => Persona::NoData,
            "close-early" => Persona::CloseEarly,
            "drop" => Persona::Drop,
            "random-restore" => Persona::RandomRestore,
            "chaos" => Persona::Chaos,
            _ => match s.strip_prefix("delay:") {
                Some(ms) => {
                    Persona::Delay(Duration::from_millis(ms.parse::<u64>().map_err(|_| {
                        format!("persona {s:?}: delay needs milliseconds, e.g. delay:200")
                    })?))
                }
                None => {
                    return Err(format!(
                        "unknown persona {s:?} (open-error, read-error, no-data, close-early, \
                         delay:MS, drop, random-restore, chaos)"
                    ))
                }
            },
        })
    }

    /// Parses a comma-separated list.
    pub fn parse_list(s: &str) -> Result<Vec<Persona>, String> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Persona::parse)
            .collect()
    }
}

impl fmt::Display for Persona {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Persona::OpenError => f.write_str("open-error"),
            Persona::ReadError => f.write_str("read-error"),
            Persona::NoData => f.write_str("no-data"),
            Persona::CloseEarly => f.write_str("close-early"),
            Persona::Delay(d) => write!(f, "delay:{}", d.as_millis()),
            Persona::Drop => f.write_str("drop"),
            Persona::RandomRestore => f.write_str("random-restore"),
            Persona::Chaos => f.write_str("chaos"),
        }
    }
}

/// What to do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Behave.
    Normal,
    /// `copen id,-EIO`.
    FailOpen,
    /// Close the anon fd, then copen.
    CloseEarly,
    /// READ_COMPLETE without data.
    NoData,
    /// Sleep, then behave.
    Delay(Duration),
    /// Never answer.
    Drop,
}

/// The decision for one delivered request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Write `restore` after handling the request.
    pub restore_after: bool,
}

impl Decision {
    pub const NORMAL: Decision = Decision {
        action: Action::Normal,
        restore_after: false,
    };
}

/// The largest random delay chaos picks.
const CHAOS_MAX_DELAY_MS: u64 = 200;

/// SplitMix64: a small, well-mixed PRNG (not for cryptography).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// The configured personas with their seed and rate.
#[derive(Clone, Debug)]
pub struct Personas {
    list: Vec<Persona>,
    seed: u64,
    rate: f64,
}

impl Personas {
    /// `rate` is the probability (0..=1) that a persona acts on a request;
    /// by default 1.0, or 0.25 when `chaos` is among the personas.
    pub fn new(list: Vec<Persona>, seed: u64, rate: Option<f64>) -> Result<Personas, String> {
        let default = if list.contains(&Persona::Chaos) {
            0.25
        } else {
            1.0
        };
        let rate = rate.unwrap_or(default);
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("--persona-rate {rate} is not between 0 and 1"));
        }
        Ok(Personas { list, seed, rate })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn names(&self) -> String {
        self.list
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether random-restore is in effect (alone or through chaos).
    pub fn restores(&self) -> bool {
        self.has(&Persona::RandomRestore)
    }

    fn has(&self, p: &Persona) -> bool {
        self.list.contains(p) || self.list.contains(&Persona::Chaos)
    }

    /// Decides what to do with delivery number `delivery` (0-based) of the
    /// request `msg_id` with `opcode`.
    pub fn decide(&self, opcode: u32, msg_id: u32, delivery: u32) -> Decision {
        if self.list.is_empty() {
            return Decision::NORMAL;
        }
        let mut rng = SplitMix(
            self.seed
                ^ (u64::from(opcode) << 56)
                ^ (u64::from(msg_id) << 16)
                ^ u64::from(delivery).wrapping_mul(0xD6E8_FEB8_6659_FD93),
        );
        rng.next();
        let restore_after = self.has(&Persona::RandomRestore) && rng.chance(self.rate);

        let chaos = self.list.contains(&Persona::Chaos);
        let mut candidates: Vec<Action> = Vec::new();
        let mut consider = |p: &Persona, a: Action| {
            if chaos || self.list.contains(p) {
                candidates.push(a);
            }
        };
        match opcode {
            OP_OPEN => {
                consider(&Persona::OpenError, Action::FailOpen);
                consider(&Persona::CloseEarly, Action::CloseEarly);
                consider(&Persona::Drop, Action::Drop);
            }
            OP_READ => {
                consider(&Persona::ReadError, Action::NoData);
                consider(&Persona::NoData, Action::NoData);
                consider(&Persona::Drop, Action::Drop);
            }
            _ => {}
        }
        if opcode == OP_OPEN || opcode == OP_READ {
            for p in &self.list {
                if let Persona::Delay(d) = p {
                    candidates.push(Action::Delay(*d));
                }
            }
            if chaos {
                candidates.push(Action::Delay(Duration::from_millis(
                    rng.below(CHAOS_MAX_DELAY_MS + 1),
                )));
            }
        }
        let action = if !candidates.is_empty() && rng.chance(self.rate) {
            let i = rng.below(candidates.len() as u64) as usize;
            candidates.get(i).copied().unwrap_or(Action::Normal)
        } else {
            Action::Normal
        };
        Decision {
            action,
            restore_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::OP_CLOSE;

    #[test]
    fn parses_names() {
        let l = Persona::parse_list(
            "open-error, read-error,no-data,close-early,delay:15,drop,random-restore,chaos",
        )
        .unwrap();
        assert_eq!(l.len(), 8);
        assert_eq!(l[4], Persona::Delay(Duration::from_millis(15)));
        let round: Vec<String> = l.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            round.join(","),
            "open-error,read-error,no-data,close-early,delay:15,drop,random-restore,chaos"
        );
        assert!(Persona::parse("delay:x").is_err());
        assert!(Persona::parse("bogus").is_err());
        assert_eq!(Persona::parse_list("").unwrap(), vec![]);
    }

    #[test]
    fn rate_bounds() {
        assert!(Personas::new(vec![], 0, Some(1.5)).is_err());
        assert_eq!(
            Personas::new(vec![Persona::Chaos], 0, None).unwrap().rate(),
            0.25
        );
        assert_eq!(
            Personas::new(vec![Persona::Drop], 0, None).unwrap().rate(),
            1.0
        );
    }

    #[test]
    fn single_persona_applies_to_its_opcode_only() {
        let p = Personas::new(vec![Persona::ReadError], 1, None).unwrap();
        for id in 0..100 {
            assert_eq!(p.decide(OP_READ, id, 0).action, Action::NoData);
            assert_eq!(p.decide(OP_OPEN, id, 0), Decision::NORMAL);
            assert_eq!(p.decide(OP_CLOSE, id, 0), Decision::NORMAL);
        }
        let p = Personas::new(vec![Persona::OpenError], 1, None).unwrap();
        assert_eq!(p.decide(OP_OPEN, 3, 0).action, Action::FailOpen);
        assert_eq!(p.decide(OP_READ, 3, 0).action, Action::Normal);
        let p = Personas::new(vec![Persona::Delay(Duration::from_millis(7))], 1, None).unwrap();
        assert_eq!(
            p.decide(OP_READ, 3, 0).action,
            Action::Delay(Duration::from_millis(7))
        );
        let p = Personas::new(vec![Persona::RandomRestore], 1, None).unwrap();
        let d = p.decide(OP_CLOSE, 3, 0);
        assert!(d.restore_after);
        assert_eq!(d.action, Action::Normal);
    }

    #[test]
    fn chaos_is_deterministic_and_mixed() {
        let a = Personas::new(vec![Persona::Chaos], 42, Some(0.5)).unwrap();
        let b = Personas::new(vec![Persona::Chaos], 42, Some(0.5)).unwrap();
        let c = Personas::new(vec![Persona::Chaos], 43, Some(0.5)).unwrap();
        let run = |p: &Personas| -> Vec<Decision> {
            (0..500)
                .map(|i| p.decide(if i % 2 == 0 { OP_OPEN } else { OP_READ }, i, i % 3))
                .collect()
        };
        assert_eq!(run(&a), run(&b));
        assert_ne!(run(&a), run(&c));
        let all = run(&a);
        let normal = all.iter().filter(|d| d.action == Action::Normal).count();
        assert!((150..350).contains(&normal), "normal={normal}");
        for want in [
            Action::FailOpen,
            Action::CloseEarly,
            Action::NoData,
            Action::Drop,
        ] {
            assert!(
                all.iter().any(|d| d.action == want),
                "{want:?} never chosen"
            );
        }
        assert!(all.iter().any(|d| matches!(d.action, Action::Delay(_))));
        assert!(all.iter().any(|d| d.restore_after));
        // A redelivery gets a fresh draw.
        assert!((0..50).any(|i| a.decide(OP_READ, i, 0) != a.decide(OP_READ, i, 1)));
    }

    #[test]
    fn rate_zero_is_normal() {
        let p = Personas::new(vec![Persona::Chaos], 9, Some(0.0)).unwrap();
        assert!((0..200).all(|i| p.decide(OP_READ, i, 0) == Decision::NORMAL));
    }
}
