//! Which calls get a span: the OpenTelemetry samplers `OTEL_TRACES_SAMPLER` names
//! (`always_on`, `always_off`, `traceidratio`, and their `parentbased_` forms, the default being
//! `parentbased_always_on`), decided before the span is built so that an unsampled call costs
//! nothing. Metrics and logs always count every call.

use opentelemetry::trace::{SpanContext, TraceId};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Root {
    On,
    Off,
    /// Keeps this fraction of traces, by trace id (the same decision at every node).
    Ratio(f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampler {
    /// A request that carries a `traceparent` follows its sampled flag.
    parent_based: bool,
    root: Root,
}

impl Default for Sampler {
    fn default() -> Self {
        Self {
            parent_based: true,
            root: Root::On,
        }
    }
}

impl Sampler {
    /// A sampler by its `OTEL_TRACES_SAMPLER` name, with `OTEL_TRACES_SAMPLER_ARG` (the ratio,
    /// 1.0 when absent).
    pub fn parse(name: &str, arg: Option<f64>) -> Result<Self, String> {
        let (parent_based, root) = match name.trim().strip_prefix("parentbased_") {
            Some(root) => (true, root),
            None => (false, name.trim()),
        };
        let root = match root {
            "always_on" => Root::On,
            "always_off" => Root::Off,
            "traceidratio" => {
                let ratio = arg.unwrap_or(1.0);
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(format!("the sampler ratio {ratio} is not between 0 and 1"));
                }
                Root::Ratio(ratio)
            }
            _ => {
                return Err(format!(
                    "unknown sampler {name:?} (always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off, parentbased_traceidratio)"
                ));
            }
        };
        Ok(Self { parent_based, root })
    }

    pub fn sample(&self, parent: Option<&SpanContext>, trace_id: TraceId) -> bool {
        if self.parent_based
            && let Some(parent) = parent
        {
            return parent.is_sampled();
        }
        match self.root {
            Root::On => true,
            Root::Off => false,
            // As the OpenTelemetry SDKs do: the trace id's low 63 bits against the ratio.
            Root::Ratio(ratio) => {
                let bytes = trace_id.to_bytes();
                let mut low = [0u8; 8];
                low.copy_from_slice(&bytes[8..16]);
                let value = u64::from_be_bytes(low) >> 1;
                let bound = (ratio * (1u64 << 63) as f64) as u64;
                value < bound
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceState};

    fn parent(sampled: bool) -> SpanContext {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(9u64),
            flags,
            true,
            TraceState::default(),
        )
    }

    #[test]
    fn parent_based_samplers_follow_the_caller() {
        let sampler = Sampler::parse("parentbased_always_off", None).unwrap();
        assert!(sampler.sample(Some(&parent(true)), TraceId::from(1u128)));
        assert!(!sampler.sample(Some(&parent(false)), TraceId::from(1u128)));
        assert!(!sampler.sample(None, TraceId::from(1u128)));
        let always = Sampler::parse("always_on", None).unwrap();
        assert!(always.sample(Some(&parent(false)), TraceId::from(1u128)));
        assert_eq!(
            Sampler::default(),
            Sampler::parse("parentbased_always_on", None).unwrap()
        );
    }

    #[test]
    fn a_ratio_keeps_that_share_of_trace_ids() {
        let sampler = Sampler::parse("traceidratio", Some(0.25)).unwrap();
        let kept = (0..10_000u64)
            .filter(|i| {
                // Spread ids over the range, as random ids are.
                let id = u128::from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                sampler.sample(None, TraceId::from(id))
            })
            .count();
        assert!((2_300..2_700).contains(&kept), "{kept}");
        assert!(Sampler::parse("traceidratio", Some(1.5)).is_err());
        assert!(Sampler::parse("jaeger_remote", None).is_err());
    }
}
