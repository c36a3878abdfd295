//! The detector names a route may select, by direction. The DLP engine owns
//! them: routes.yaml parses straight into these types, so the policy depends
//! on the engine and never the other way round.

use serde::{Deserialize, Serialize};

use super::{Detector, DetectorSet};

/// A detector name as written in routes.yaml.
pub trait DetectorName: Copy + Eq + std::hash::Hash + Into<Detector> + 'static {
    /// Every detector of this direction, in canonical order.
    const ALL: &'static [Self];

    /// The routes.yaml name.
    fn name(self) -> &'static str;
}

/// The outbound (request) detectors of SPEC §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundDetector {
    /// Well-known credential formats.
    TokenPatterns,
    /// The exact values (and encodings) of secrets the proxy holds.
    KnownSecrets,
}

/// The inbound (response) detectors of SPEC §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundDetector {
    /// Curated prompt-injection phrases after normalisation.
    NaiveInjectionDetection,
}

impl DetectorName for OutboundDetector {
    const ALL: &'static [Self] = &[Self::TokenPatterns, Self::KnownSecrets];
    fn name(self) -> &'static str {
        Detector::from(self).name()
    }
}

impl DetectorName for InboundDetector {
    const ALL: &'static [Self] = &[Self::NaiveInjectionDetection];
    fn name(self) -> &'static str {
        Detector::from(self).name()
    }
}

impl From<OutboundDetector> for Detector {
    fn from(d: OutboundDetector) -> Self {
        match d {
            OutboundDetector::TokenPatterns => Self::TokenPatterns,
            OutboundDetector::KnownSecrets => Self::KnownSecrets,
        }
    }
}

impl From<InboundDetector> for Detector {
    fn from(d: InboundDetector) -> Self {
        match d {
            InboundDetector::NaiveInjectionDetection => Self::NaiveInjectionDetection,
        }
    }
}

impl DetectorSet {
    /// The set of these named detectors.
    #[must_use]
    pub fn of_names<D: DetectorName>(names: impl IntoIterator<Item = D>) -> Self {
        let all: Vec<Detector> = names.into_iter().map(Into::into).collect();
        Self::of(&all)
    }
}
