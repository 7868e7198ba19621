//! `--plot`: latency by percentile as SVG (plotters), HdrHistogram style.
//! x is the percentile on a log scale of 1/(1-p) (0%, 90%, 99%, 99.9%, ...),
//! y the latency in ms on a log scale, so 0.2 ms and 30 s fit one chart.

use hdrhistogram::Histogram;
use plotters::prelude::*;

const SIZE_PX: (u32, u32) = (980, 520);
/// Points per line.
const STEPS: usize = 240;

/// The percentile at x = `d` decades: 0%, 90%, 99%, 99.9%, ...
fn percentile_label(d: &f64) -> String {
    let digits = (d.round() as usize).saturating_sub(2);
    format!("{:.digits$}%", 100.0 - 100.0 / 10f64.powf(*d))
}

/// The SVG document for `series` (empty histograms are left out).
pub fn svg(title: &str, series: &[(String, Histogram<u64>)]) -> Result<String, String> {
    let series: Vec<_> = series.iter().filter(|(_, h)| !h.is_empty()).collect();
    let count_max = series.iter().map(|(_, h)| h.len()).max().unwrap_or(1);
    let decades = (count_max as f64).log10().ceil().clamp(2.0, 6.0);
    let ms = |us: u64| us.max(1) as f64 / 1000.0;
    let lo = ms(series.iter().map(|(_, h)| h.min()).min().unwrap_or(1));
    let hi = ms(series.iter().map(|(_, h)| h.max()).max().unwrap_or(1000));
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
            .build_cartesian_2d(0.0..decades, (lo * 0.9..hi * 1.1).log_scale())
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_labels(decades as usize + 1)
            .x_label_formatter(&percentile_label)
            .y_label_formatter(&|ms| format!("{}", (ms * 1000.0).round() / 1000.0))
            .x_desc("percentile")
            .y_desc("latency (ms, log scale)")
            .draw()
            .map_err(e)?;
        for (i, (name, h)) in series.iter().enumerate() {
            let color = Palette99::pick(i).stroke_width(2);
            let points = (0..=STEPS).map(|k| {
                let x = decades * k as f64 / STEPS as f64;
                (x, ms(h.value_at_quantile(1.0 - 10f64.powf(-x))))
            });
            let p = |q| ms(h.value_at_quantile(q));
            let label = format!("{name}: p50 {:.3} p99 {:.3} ms", p(0.5), p(0.99));
            chart
                .draw_series(LineSeries::new(points, color))
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_labels_and_escaping() {
        let mut h = crate::stats::new_hist();
        (1..=1000u64).for_each(|v| h.record(100 + v).unwrap());
        let s = svg("a \"b\"", &[("fast <&>".into(), h)]).unwrap();
        let escaped = s.contains("fast &lt;&amp;&gt;: p50 0.6") && s.contains("a &quot;b&quot;");
        assert!(
            s.starts_with("<svg") && escaped && s.contains("99.9%"),
            "{s}"
        );
    }
}
