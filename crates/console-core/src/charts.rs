//! Charts drawn in the core with plotters, to SVG the views embed: time series (latency,
//! throughput, queue depth, error rate) and uptime bars. Sized to the view by the caller, with
//! colours for the light and dark themes (text and grid contrast with either background).

use airwave_api::{HealthPointOut, HealthStatus};
use chrono::{DateTime, Utc};
use plotters::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Theme {
    Light,
    Dark,
}

struct Palette {
    background: RGBColor,
    text: RGBColor,
    grid: RGBColor,
    series: [RGBColor; 4],
    pass: RGBColor,
    warn: RGBColor,
    fail: RGBColor,
}

fn palette(t: Theme) -> Palette {
    match t {
        Theme::Light => Palette {
            background: RGBColor(255, 255, 255),
            text: RGBColor(17, 24, 39),
            grid: RGBColor(229, 231, 235),
            series: [
                RGBColor(37, 99, 235),
                RGBColor(217, 119, 6),
                RGBColor(5, 150, 105),
                RGBColor(219, 39, 119),
            ],
            pass: RGBColor(22, 163, 74),
            warn: RGBColor(217, 119, 6),
            fail: RGBColor(220, 38, 38),
        },
        Theme::Dark => Palette {
            background: RGBColor(17, 24, 39),
            text: RGBColor(243, 244, 246),
            grid: RGBColor(55, 65, 81),
            series: [
                RGBColor(96, 165, 250),
                RGBColor(251, 191, 36),
                RGBColor(52, 211, 153),
                RGBColor(244, 114, 182),
            ],
            pass: RGBColor(74, 222, 128),
            warn: RGBColor(251, 191, 36),
            fail: RGBColor(248, 113, 113),
        },
    }
}

/// One line of a time-series chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(DateTime<Utc>, f64)>,
}

fn err(e: impl std::fmt::Display) -> crate::Error {
    crate::Error::new(crate::ErrorKind::Invalid, format!("chart: {e}"))
}

/// A line chart of `series` over `[since, until]`, `width`×`height` pixels (at least 120×80).
pub fn line_chart(
    title: &str,
    unit: &str,
    series: &[Series],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    (width, height): (u32, u32),
    theme: Theme,
) -> Result<String, crate::Error> {
    let p = palette(theme);
    let (width, height) = (width.max(120), height.max(80));
    let x0 = since.timestamp_millis() as f64;
    let x1 = (until.timestamp_millis() as f64).max(x0 + 1.0);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, v)| *v))
        .fold(0.0_f64, f64::max);
    let y_max = if y_max <= 0.0 { 1.0 } else { y_max * 1.1 };
    let span_hours = (x1 - x0) / 3_600_000.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&p.background).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .caption(title, ("sans-serif", 14).into_font().color(&p.text))
            .x_label_area_size(24)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, 0.0..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .axis_style(p.text)
            .bold_line_style(p.grid)
            .light_line_style(p.grid.mix(0.4))
            .label_style(("sans-serif", 11).into_font().color(&p.text))
            .x_labels(5)
            .y_labels(5)
            .x_label_formatter(&|x| {
                let t = DateTime::<Utc>::from_timestamp_millis(*x as i64).unwrap_or_default();
                if span_hours > 36.0 {
                    t.format("%d %b").to_string()
                } else {
                    t.format("%H:%M").to_string()
                }
            })
            .y_desc(unit)
            .axis_desc_style(("sans-serif", 11).into_font().color(&p.text))
            .y_label_formatter(&|y| {
                if y_max < 10.0 {
                    format!("{y:.1}")
                } else {
                    format!("{y:.0}")
                }
            })
            .draw()
            .map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let colour = p.series[i % p.series.len()];
            chart
                .draw_series(LineSeries::new(
                    s.points
                        .iter()
                        .map(|(t, v)| (t.timestamp_millis() as f64, *v)),
                    colour.stroke_width(2),
                ))
                .map_err(err)?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(2))
                });
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(p.background.mix(0.8))
                .border_style(p.grid)
                .label_font(("sans-serif", 11).into_font().color(&p.text))
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Uptime bars: one bar per history point, coloured by its status, `width`×`height` pixels.
pub fn uptime_bars(
    points: &[HealthPointOut],
    (width, height): (u32, u32),
    theme: Theme,
) -> Result<String, crate::Error> {
    let p = palette(theme);
    let (width, height) = (width.max(40), height.max(8));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&p.background).map_err(err)?;
        let n = points.len().max(1) as f64;
        let bar = width as f64 / n;
        for (i, pt) in points.iter().enumerate() {
            let colour = match pt.status {
                HealthStatus::Pass => p.pass,
                HealthStatus::Warn => p.warn,
                HealthStatus::Fail => p.fail,
            };
            let x0 = (i as f64 * bar).round() as i32;
            let x1 = (((i + 1) as f64 * bar).round() as i32 - 1).max(x0);
            root.draw(&Rectangle::new(
                [(x0, 0), (x1, height as i32)],
                colour.filled(),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).expect("well-formed SVG")
    }

    #[test]
    fn a_line_chart_is_valid_svg_with_one_line_per_series() {
        let t0 = DateTime::<Utc>::from_timestamp(1_764_000_000, 0).unwrap();
        let at = |m: i64| t0 + chrono::Duration::minutes(m);
        let series = vec![
            Series {
                name: "p50".into(),
                points: (0..30).map(|m| (at(m), 2.0 + m as f64 % 3.0)).collect(),
            },
            Series {
                name: "p99".into(),
                points: (0..30).map(|m| (at(m), 9.0 + m as f64 % 5.0)).collect(),
            },
        ];
        for theme in [Theme::Light, Theme::Dark] {
            let svg = line_chart(
                "Database latency",
                "ms",
                &series,
                at(0),
                at(30),
                (640, 240),
                theme,
            )
            .unwrap();
            let doc = parse(&svg);
            let root = doc.root_element();
            assert_eq!(root.tag_name().name(), "svg");
            assert_eq!(root.attribute("width"), Some("640"));
            let lines: Vec<_> = doc
                .descendants()
                .filter(|n| {
                    n.tag_name().name() == "polyline" && n.attribute("stroke-width") == Some("2")
                })
                .collect();
            // Two series plus their two legend marks.
            assert_eq!(lines.len(), 4, "{theme:?}");
            let pts = lines[0]
                .attribute("points")
                .unwrap()
                .split_whitespace()
                .count();
            assert_eq!(pts, 30, "one vertex per point");
            assert!(svg.contains("Database latency"));
        }
        let light =
            line_chart("x", "ms", &series, at(0), at(30), (640, 240), Theme::Light).unwrap();
        let dark = line_chart("x", "ms", &series, at(0), at(30), (640, 240), Theme::Dark).unwrap();
        assert!(
            light.contains("#FFFFFF") && dark.contains("#111827"),
            "themed backgrounds"
        );
    }

    #[test]
    fn an_empty_chart_still_draws() {
        let t0 = Utc::now();
        let svg = line_chart(
            "Nothing yet",
            "jobs/min",
            &[],
            t0 - chrono::Duration::hours(1),
            t0,
            (10, 10),
            Theme::Light,
        )
        .unwrap();
        assert_eq!(
            parse(&svg).root_element().attribute("width"),
            Some("120"),
            "clamped to a minimum"
        );
    }

    #[test]
    fn uptime_bars_colour_each_point_by_status() {
        let t0 = Utc::now();
        let pt = |status| HealthPointOut {
            at: t0,
            status,
            observed_value: None,
            samples: 1,
        };
        let svg = uptime_bars(
            &[
                pt(HealthStatus::Pass),
                pt(HealthStatus::Fail),
                pt(HealthStatus::Pass),
            ],
            (300, 20),
            Theme::Light,
        )
        .unwrap();
        let doc = parse(&svg);
        let fills: Vec<&str> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "rect")
            .filter_map(|n| n.attribute("fill"))
            .collect();
        assert!(
            fills.contains(&"#16A34A") && fills.contains(&"#DC2626"),
            "{fills:?}"
        );
    }
}
