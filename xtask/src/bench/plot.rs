//! Latency distributions with and without the agent, one SVG per scenario: every round's
//! percentile curve, on an axis of "nines" so the tail (p99, p99.9) gets as much room as the
//! median.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::{load::FixedRate, scenario::ScenarioRun, variant::Variant};

/// Percentile -> distance on the nines axis (p90 = 1, p99 = 2, p99.9 = 3).
fn nines(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).log10()
}

fn nines_label(x: f64) -> String {
    let p = (1.0 - 10f64.powf(-x)) * 100.0;
    let text = format!("p{p:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn curve(run: &FixedRate) -> Vec<(f64, f64)> {
    run.percentiles_ms
        .iter()
        .map(|(p, ms)| (nines(*p), *ms))
        .collect()
}

/// Writes `latency-{scenario}.svg` into `dir`; returns its file name.
pub fn latency(run: &ScenarioRun, rate: u32, dir: &Path) -> anyhow::Result<String> {
    let name = format!("latency-{}.svg", run.name);
    let path = dir.join(&name);
    let without: Vec<Vec<(f64, f64)>> =
        run.rounds.iter().map(|r| curve(&r.fixed_without)).collect();
    let with = |variant: Variant| -> Vec<Vec<(f64, f64)>> {
        run.rounds
            .iter()
            .filter_map(|r| r.with(variant))
            .map(|w| curve(&w.fixed))
            .collect()
    };
    let json = with(Variant::Json);
    let otlp = with(Variant::OtlpGrpc);
    let floor = with(Variant::Floor);
    let (x_max, y_max) = without
        .iter()
        .chain(&json)
        .chain(&otlp)
        .chain(&floor)
        .flatten()
        .fold((1.0, 0.0), |(x_max, y_max): (f64, f64), (x, ms)| {
            (x_max.max(*x), y_max.max(*ms))
        });
    let y_max = y_max * 1.05;
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(&path, (760, 440)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{}: latency at {rate} requests/s, each round", run.name),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max.max(0.001))?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_labels(5)
            .x_label_formatter(&|x| nines_label(*x))
            .draw()?;
        let sides = [
            (without, RGBColor(31, 119, 180), "without the agent"),
            (json, RGBColor(214, 39, 40), "with the agent (JSON lines)"),
            (otlp, RGBColor(148, 103, 189), "with the agent (OTLP/gRPC)"),
            (
                floor,
                RGBColor(44, 160, 44),
                "empty programs at the same hooks (floor)",
            ),
        ];
        for (curves, color, label) in sides {
            for (i, points) in curves.into_iter().enumerate() {
                let series = chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
                if i == 0 {
                    series
                        .label(label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow!("plotting {}: {e}", path.display()))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nines_axis() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines_label(2.0), "p99");
        assert_eq!(nines_label(3.0), "p99.9");
        assert_eq!(nines_label(0.0), "p0");
    }
}
