//! `--plot`: latency by percentile, HdrHistogram style, as SVG (plotters).
//! x is the percentile on a log scale of 1/(1-p) (0%, 90%, 99%, 99.9%, ...),
//! y the latency in ms: linear from 0, or logarithmic when the series span
//! more than two decades (festival steps go from 0.2 ms to 30 s).

use hdrhistogram::Histogram;
use plotters::prelude::*;

const SIZE_PX: (u32, u32) = (980, 520);
/// Points per line.
const STEPS: usize = 240;

/// Percentile at x = `d` decades: 0%, 90%, 99%, 99.9%, ...
fn percentile_label(d: f64) -> String {
    if d <= 0.0 {
        return "0%".into();
    }
    let digits = (d.round() as usize).saturating_sub(2);
    format!("{:.digits$}%", 100.0 - 100.0 / 10f64.powf(d))
}

fn ms_label(v: f64) -> String {
    match v {
        0.0 => "0".into(),
        v if v < 0.001 => format!("{v:.4}"),
        v if v >= 10.0 => format!("{v:.0}"),
        v if v >= 1.0 => format!("{v:.1}"),
        v => format!("{v:.3}"),
    }
}

/// The SVG document for `series` (empty histograms are left out).
pub fn svg(title: &str, series: &[(String, &Histogram<u64>)]) -> Result<String, String> {
    let series: Vec<&(String, &Histogram<u64>)> =
        series.iter().filter(|(_, h)| !h.is_empty()).collect();
    let count_max = series.iter().map(|(_, h)| h.len()).max().unwrap_or(1);
    let decades = ((count_max as f64).log10().ceil() as i32).clamp(2, 6) as f64;
    let max_ms = series.iter().map(|(_, h)| h.max()).max().unwrap_or(1000) as f64 / 1000.0;
    let min_ms = series
        .iter()
        .map(|(_, h)| h.min().max(1))
        .min()
        .unwrap_or(1) as f64
        / 1000.0;
    // on a log axis y holds log10(ms)
    let log = max_ms / min_ms > 100.0;
    let (y_lo, y_hi) = if log {
        let lo = min_ms.log10().floor();
        (lo, max_ms.log10().ceil().max(lo + 1.0))
    } else {
        (0.0, max_ms * 1.05)
    };
    let y_of = |v_ms: f64| if log { v_ms.max(1e-3).log10() } else { v_ms };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE_PX).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| format!("plot: {e}");
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..decades, y_lo..y_hi)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_labels(decades as usize + 1)
            .x_label_formatter(&|d| percentile_label(*d))
            .y_labels(if log { (y_hi - y_lo) as usize + 1 } else { 6 })
            .y_label_formatter(&|y| ms_label(if log { 10f64.powf(*y) } else { *y }))
            .x_desc("percentile")
            .y_desc(if log {
                "latency (ms, log scale)"
            } else {
                "latency (ms)"
            })
            .draw()
            .map_err(e)?;
        for (i, (name, h)) in series.iter().enumerate() {
            let color = Palette99::pick(i).stroke_width(2);
            let points = (0..=STEPS).map(|k| {
                let x = decades * k as f64 / STEPS as f64;
                let v = if k == STEPS {
                    h.max()
                } else {
                    h.highest_equivalent(h.value_at_quantile(1.0 - 10f64.powf(-x)))
                        .min(h.max())
                };
                (x, y_of(v as f64 / 1000.0))
            });
            let ms = |us: u64| us as f64 / 1000.0;
            let (p50, p99) = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
            chart
                .draw_series(LineSeries::new(points, color))
                .map_err(e)?
                .label(format!(
                    "{name}: p50 {:.3} p99 {:.3} max {:.3} ms",
                    ms(p50),
                    ms(p99),
                    ms(h.max())
                ))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
        if series.is_empty() {
            root.draw(&Text::new(
                "no samples",
                (SIZE_PX.0 as i32 / 2, SIZE_PX.1 as i32 / 2),
                ("sans-serif", 14),
            ))
            .map_err(e)?;
        } else {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(e)?;
        }
        root.present().map_err(e)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_hist;

    /// The text of every `<text>` element, trimmed.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                Some(
                    t.split_once('>')?
                        .1
                        .split_once("</text>")?
                        .0
                        .trim()
                        .to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn lines_labels_and_escaping() {
        let mut h = new_hist();
        for v in 1..=1000u64 {
            h.record(1000 + v * 9).unwrap(); // 1..10 ms: a linear axis
        }
        let s = svg("meter \"test\"", &[("fanout <&>".into(), &h)]).unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..80]);
        assert!(s.trim_end().ends_with("</svg>"));
        let wide = |l: &&str| {
            l.split('>')
                .next()
                .is_some_and(|a| a.contains("stroke-width=\"2\""))
        };
        let lines = s.split("<polyline").skip(1).filter(wide).count();
        assert_eq!(lines, 2, "the series and its legend mark");
        let t = texts(&s);
        assert!(
            t.iter()
                .any(|t| t.starts_with("fanout &lt;&amp;&gt;: p50 ")),
            "{t:?}"
        );
        assert!(t.contains(&"meter &quot;test&quot;".to_string()), "{t:?}");
        assert!(
            t.contains(&"99.9%".to_string()) && t.contains(&"0%".to_string()),
            "{t:?}"
        );
        assert!(t.contains(&"latency (ms)".to_string()), "{t:?}");
        assert!(!s.contains("NaN") && !s.contains("inf"));
    }

    #[test]
    fn wide_spread_goes_logarithmic_and_empty_says_so() {
        let mut fast = new_hist();
        fast.record(100).unwrap();
        let mut slow = new_hist();
        slow.record(30_000_000).unwrap();
        let l = svg("log", &[("fast".into(), &fast), ("slow".into(), &slow)]).unwrap();
        let t = texts(&l);
        assert!(t.contains(&"latency (ms, log scale)".to_string()), "{t:?}");
        assert!(
            t.contains(&"0.100".to_string()) && t.contains(&"100000".to_string()),
            "{t:?}"
        );
        assert!(!l.contains("NaN") && !l.contains("inf"));
        assert!(texts(&svg("none", &[]).unwrap()).contains(&"no samples".to_string()));
    }

    #[test]
    fn axis_labels() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(4.0), "99.99%");
        assert_eq!(ms_label(0.1), "0.100");
        assert_eq!(ms_label(2.5), "2.5");
        assert_eq!(ms_label(100000.0), "100000");
    }
}
