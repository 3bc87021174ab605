//! Usage charts drawn on the server as SVG: stacked bars per hour with a y axis in
//! requests and an x axis in hours (UTC), and a legend. No JavaScript, no library.

use std::fmt::Write;

/// One stacked series.
pub struct Series<'a> {
    pub label: &'a str,
    pub color: &'static str,
    pub values: Vec<u64>,
}

const WIDTH: u32 = 720;
const HEIGHT: u32 = 260;
const LEFT: u32 = 56;
const RIGHT: u32 = 12;
const TOP: u32 = 28;
const BOTTOM: u32 = 40;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `n` (at least 1): the top of the y axis.
fn nice_ceiling(n: u64) -> u64 {
    let mut scale = 1u64;
    loop {
        for step in [1, 2, 5] {
            let candidate = scale.saturating_mul(step);
            if candidate >= n.max(1) {
                return candidate;
            }
        }
        scale = scale.saturating_mul(10);
    }
}

/// The y axis's step: the smallest 1, 2 or 5 × 10ⁿ with four steps reaching `max`, so
/// that every label is a whole number and the labels are evenly spaced.
fn axis_step(max: u64) -> u64 {
    nice_ceiling(max.div_ceil(4))
}

/// A stacked bar chart; `x_labels` names each bar (every third is printed).
pub fn stacked_bars(title: &str, x_labels: &[String], series: &[Series<'_>], y_unit: &str, x_unit: &str) -> String {
    let bars = x_labels.len().max(1);
    let totals: Vec<u64> =
        (0..bars).map(|i| series.iter().map(|s| s.values.get(i).copied().unwrap_or(0)).sum()).collect();
    let step = axis_step(totals.iter().copied().max().unwrap_or(0));
    let top = step.saturating_mul(4);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = f64::from(plot_w) / bars as f64;
    let bar_w = (slot * 0.7).max(1.0);
    let y = |v: u64| f64::from(TOP) + f64::from(plot_h) * (1.0 - v as f64 / top as f64);

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" font-family="system-ui, sans-serif" font-size="11">"#,
        escape(title)
    );
    // Grid lines and y labels: five evenly spaced whole numbers.
    for i in 0..=4u64 {
        let value = step.saturating_mul(i);
        let yy = y(value);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#d9dee8"/><text x="{}" y="{:.1}" text-anchor="end" fill="#5b6475">{value}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6,
            yy + 4.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle" fill="#5b6475">{}</text>"##,
        TOP + plot_h / 2,
        TOP + plot_h / 2,
        escape(y_unit)
    );
    // Bars, stacked in series order from the bottom.
    for (i, label) in x_labels.iter().enumerate() {
        let x = f64::from(LEFT) + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut base = 0u64;
        for s in series {
            let v = s.values.get(i).copied().unwrap_or(0);
            if v > 0 {
                let (y_top, y_bottom) = (y(base + v), y(base));
                let _ = write!(
                    svg,
                    r#"<rect x="{x:.1}" y="{y_top:.1}" width="{bar_w:.1}" height="{:.1}" fill="{}"><title>{} {}: {v}</title></rect>"#,
                    (y_bottom - y_top).max(0.5),
                    s.color,
                    escape(label),
                    escape(s.label)
                );
            }
            base += v;
        }
        if i % 3 == 0 {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#5b6475">{}</text>"##,
                x + bar_w / 2.0,
                HEIGHT - BOTTOM + 14,
                escape(label)
            );
        }
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="#5b6475"/><text x="{}" y="{}" text-anchor="middle" fill="#5b6475">{}</text>"##,
        WIDTH - RIGHT,
        TOP + plot_h,
        TOP + plot_h,
        LEFT + plot_w / 2,
        HEIGHT - 6,
        escape(x_unit)
    );
    // Legend.
    let mut lx = LEFT;
    for s in series {
        let _ = write!(
            svg,
            r##"<rect x="{lx}" y="8" width="10" height="10" fill="{}"/><text x="{}" y="17" fill="#1d2433">{}</text>"##,
            s.color,
            lx + 14,
            escape(s.label)
        );
        lx += 24 + 7 * u32::try_from(s.label.chars().count()).unwrap_or(10);
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round_numbers() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(4_999), 5_000);
        assert_eq!(nice_ceiling(u64::MAX), u64::MAX);
    }

    #[test]
    fn axis_steps_are_even_and_reach_the_maximum() {
        for max in 0..=10_000u64 {
            let step = axis_step(max);
            assert!(step * 4 >= max, "{max}");
            assert!(step == 1 || step * 4 < max * 3, "{max}: the axis is not needlessly tall");
        }
        assert_eq!(axis_step(4), 1);
        assert_eq!(axis_step(7), 2);
        assert_eq!(axis_step(11), 5);
    }

    #[test]
    fn bars_legend_axes_and_escaping() {
        let labels: Vec<String> = (0..6).map(|h| format!("{h:02}h")).collect();
        let svg = stacked_bars(
            "r<eq>",
            &labels,
            &[
                Series { label: "valid", color: "#1a7f37", values: vec![1, 2, 0, 0, 4, 0] },
                Series { label: "missing & <x>", color: "#9a6700", values: vec![0, 1, 0, 0, 0, 0] },
            ],
            "requests",
            "hour (UTC)",
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 4 + 2, "four bars and two legend swatches");
        let ticks: Vec<&str> = svg
            .match_indices("text-anchor=\"end\" fill=\"#5b6475\">")
            .map(|(i, m)| {
                let rest = &svg[i + m.len()..];
                &rest[..rest.find('<').unwrap()]
            })
            .collect();
        assert_eq!(ticks, ["0", "1", "2", "3", "4"], "a maximum of 4: no label skipped");
        assert!(svg.contains("missing &amp; &lt;x&gt;") && !svg.contains("<x>"));
        assert!(svg.contains("hour (UTC)") && svg.contains(">00h<"));
    }
}
