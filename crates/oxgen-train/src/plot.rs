//! PNG outputs: loss curves, 2D scatter plots and image grids.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::error::{Error, Result};

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// A tick label that stays short on linear and log axes: up to 3 significant digits without
/// trailing zeros (0.25, 1.5, 1200), scientific outside 10⁻³..10⁵ (1e-4, 2.5e6). plotters'
/// default printed log-axis ticks as digit strings such as `0000000001`.
pub fn tick_label(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".into() } else { v.to_string() };
    }
    let a = v.abs();
    let trim = |t: String| -> String {
        if t.contains('.') {
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            t
        }
    };
    if (1e-3..1e5).contains(&a) {
        // Decimals for 3 significant digits.
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        trim(format!("{v:.decimals$}"))
    } else {
        let t = format!("{v:.2e}");
        let (mantissa, exponent) = t.split_once('e').unwrap_or((&t, "0"));
        format!("{}e{exponent}", trim(mantissa.to_string()))
    }
}

fn fmt_tick(v: &f64) -> String {
    tick_label(*v)
}

/// A legend entry's mark: a short line in its series' style.
fn legend_line(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style)
}

/// The chart's legend at `position`, on a light box with a border.
fn draw_legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, CT>,
    position: SeriesLabelPosition,
    path: &Path,
) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(|e| plot_err(path, e))
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.into(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Draws on a white in-memory canvas of `size` pixels, then writes it to `path` as a PNG
/// ([`write_png`]).
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        draw(&root)?;
        root.present().map_err(|e| plot_err(path, e))?;
    }
    let img = image::RgbImage::from_raw(size.0, size.1, buf).expect("the canvas's own size");
    write_png(path, &img)
}

/// Writes `img` to `path` as a PNG, atomically: a reader never sees half a picture, and a
/// failed write leaves the previous one.
fn write_png(path: &Path, img: &image::RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| plot_err(path, e))?;
    crate::run::write_atomic(path, &bytes, "picture")
}

/// A loss curve: raw losses (light) and an exponential moving average (dark); log-scale y when
/// every loss is positive, linear otherwise (a flow's NLL per dimension goes below zero).
pub fn loss_curve(path: &Path, steps: &[usize], losses: &[f64], title: &str) -> Result<()> {
    register_font();
    let pts: Vec<(f64, f64)> = steps
        .iter()
        .zip(losses)
        .filter(|(_, l)| l.is_finite())
        .map(|(&s, &l)| (s as f64, l))
        .collect();
    if pts.is_empty() {
        return Ok(());
    }
    let (x0, x1) = (pts[0].0, pts.last().unwrap().0.max(pts[0].0 + 1.0));
    let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    render(path, (800, 500), |root| {
        let builder = || {
            let mut b = ChartBuilder::on(&root);
            b.caption(title, ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(75);
            b
        };
        if lo > 0.0 {
            let chart = builder()
                .build_cartesian_2d(x0..x1, (lo * 0.9..hi * 1.1).log_scale())
                .map_err(|e| plot_err(path, e))?;
            draw_curve(chart, &pts, path)?;
        } else {
            let pad = 0.05 * (hi - lo).max(1e-9);
            let chart = builder()
                .build_cartesian_2d(x0..x1, lo - pad..hi + pad)
                .map_err(|e| plot_err(path, e))?;
            draw_curve(chart, &pts, path)?;
        }
        Ok(())
    })
}

fn draw_curve<'a, Y>(
    mut chart: ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    pts: &[(f64, f64)],
    path: &Path,
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .x_label_formatter(&fmt_tick)
        .y_label_formatter(&fmt_tick)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|e| plot_err(path, e))?;
    let light = RGBColor(150, 180, 230);
    let dark = RGBColor(20, 60, 160);
    chart
        .draw_series(LineSeries::new(pts.iter().copied(), light))
        .map_err(|e| plot_err(path, e))?
        .label("loss")
        .legend(legend_line(light.stroke_width(2)));
    let mut ema = pts[0].1;
    let smooth: Vec<(f64, f64)> = pts
        .iter()
        .map(|&(s, l)| {
            ema = 0.95 * ema + 0.05 * l;
            (s, ema)
        })
        .collect();
    chart
        .draw_series(LineSeries::new(smooth, dark.stroke_width(2)))
        .map_err(|e| plot_err(path, e))?
        .label("moving average (0.95)")
        .legend(legend_line(dark.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    Ok(())
}

/// Curves in panels stacked one above the other, each with its own linear y axis: (name,
/// points) per panel, against training steps. Panels without a finite point are left out.
pub fn panels(path: &Path, title: &str, series: &[(&str, Vec<(f64, f64)>)]) -> Result<()> {
    panels_over(path, title, "step", series)
}

/// [`panels`] with another x axis than training steps, named `x_name`.
pub fn panels_over(
    path: &Path,
    title: &str,
    x_name: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<()> {
    register_font();
    let series: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(n, p)| (*n, p.iter().copied().filter(|q| q.1.is_finite()).collect()))
        .filter(|(_, p): &(&str, Vec<(f64, f64)>)| !p.is_empty())
        .collect();
    if series.is_empty() {
        return Ok(());
    }
    render(path, (800, 220 * series.len() as u32 + 40), |root| {
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| plot_err(path, e))?;
        let x1 = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|q| q.0))
            .fold(0.0f64, f64::max);
        let x1 = if x1 > 0.0 { x1 } else { 1.0 };
        // Negative x (a cost below zero, say) widens the axis to the left.
        let x0 = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|q| q.0))
            .fold(0.0f64, f64::min);
        let x0 = if x0 < 0.0 { x0 - 0.05 * (x1 - x0) } else { 0.0 };
        for (area, (name, pts)) in root.split_evenly((series.len(), 1)).iter().zip(&series) {
            let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            // A flat series gets a unit-wide axis, not one of rounding noise.
            let pad = if hi - lo < 1e-9 {
                0.5
            } else {
                0.05 * (hi - lo)
            };
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(75)
                .build_cartesian_2d(x0..x1, lo - pad..hi + pad)
                .map_err(|e| plot_err(path, e))?;
            chart
                .configure_mesh()
                .x_desc(x_name)
                .y_desc(*name)
                .x_label_formatter(&fmt_tick)
                .y_label_formatter(&fmt_tick)
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 16))
                .draw()
                .map_err(|e| plot_err(path, e))?;
            chart
                .draw_series(LineSeries::new(
                    pts.iter().copied(),
                    RGBColor(20, 60, 160).stroke_width(2),
                ))
                .map_err(|e| plot_err(path, e))?;
            if pts.len() <= 40 {
                chart
                    .draw_series(
                        pts.iter()
                            .map(|&p| Circle::new(p, 3, RGBColor(20, 60, 160).filled())),
                    )
                    .map_err(|e| plot_err(path, e))?;
            }
        }
        Ok(())
    })
}

/// A scatter plot of generated 2D points (blue) over reference points (grey).
pub fn scatter(path: &Path, samples: &[f32], reference: &[f32], title: &str) -> Result<()> {
    register_font();
    let all = samples
        .iter()
        .chain(reference)
        .copied()
        .filter(|v| v.is_finite());
    let lim = all.fold(1.0f32, |m, v| m.max(v.abs())).min(10.0) as f64 * 1.1;
    render(path, (640, 640), |root| {
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(-lim..lim, -lim..lim)
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .x_label_formatter(&fmt_tick)
            .y_label_formatter(&fmt_tick)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| plot_err(path, e))?;
        let dots = |pts: &[f32], color: RGBAColor| {
            pts.chunks(2)
                .map(move |p| Circle::new((p[0] as f64, p[1] as f64), 2, color.filled()))
                .collect::<Vec<_>>()
        };
        chart
            .draw_series(dots(reference, RGBColor(170, 170, 170).mix(0.5)))
            .map_err(|e| plot_err(path, e))?;
        chart
            .draw_series(dots(samples, RGBColor(30, 90, 200).mix(0.7)))
            .map_err(|e| plot_err(path, e))?;
        Ok(())
    })
}

/// A grid of images in [−1, 1], channel-major `[n, channels, h, w]`, each scaled up `zoom`×.
pub fn image_grid(
    path: &Path,
    images: &[f32],
    channels: usize,
    h: usize,
    w: usize,
    zoom: usize,
) -> Result<()> {
    let per = channels * h * w;
    let n = images.len() / per;
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let rows = n.div_ceil(cols);
    let pad = 2;
    let (cw, ch) = (w * zoom + pad, h * zoom + pad);
    let mut img = image::RgbImage::from_pixel(
        (cols * cw + pad) as u32,
        (rows * ch + pad) as u32,
        image::Rgb([40, 40, 40]),
    );
    for k in 0..n {
        let (r, c) = (k / cols, k % cols);
        for y in 0..h * zoom {
            for x in 0..w * zoom {
                let px = |ci: usize| {
                    let v = images[k * per + ci * h * w + (y / zoom) * w + x / zoom];
                    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
                };
                let rgb = if channels == 3 {
                    [px(0), px(1), px(2)]
                } else {
                    [px(0); 3]
                };
                img.put_pixel(
                    (pad + c * cw + x) as u32,
                    (pad + r * ch + y) as u32,
                    image::Rgb(rgb),
                );
            }
        }
    }
    write_png(path, &img)
}

/// Named points on the unit square (precision against recall, say), one colour each.
pub fn labelled_points(
    path: &Path,
    points: &[(String, f64, f64)],
    x_desc: &str,
    y_desc: &str,
    title: &str,
) -> Result<()> {
    register_font();
    render(path, (600, 600), |root| {
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.05, 0.0..1.05)
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&fmt_tick)
            .y_label_formatter(&fmt_tick)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(|e| plot_err(path, e))?;
        for (i, (name, x, y)) in points.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(std::iter::once(Circle::new((*x, *y), 6, colour.filled())))
                .map_err(|e| plot_err(path, e))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    name.clone(),
                    (*x + 0.015, *y + 0.015),
                    ("sans-serif", 16).into_font().color(&colour),
                )))
                .map_err(|e| plot_err(path, e))?;
        }
        Ok(())
    })
}

/// One curve of (x, y) points against a horizontal reference line, with a legend: a trade-off
/// (utility against ε, say) beside what it would be without the constraint.
pub fn curve_with_reference(
    path: &Path,
    title: &str,
    (x_name, y_name): (&str, &str),
    (name, points): (&str, &[(f64, f64)]),
    reference: Option<(&str, f64)>,
) -> Result<()> {
    register_font();
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    if pts.is_empty() {
        return Ok(());
    }
    let ys = pts.iter().map(|p| p.1).chain(reference.map(|r| r.1));
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    let pad = if hi - lo < 1e-9 {
        0.5
    } else {
        0.08 * (hi - lo)
    };
    let x1 = pts.iter().map(|p| p.0).fold(0.0f64, f64::max) * 1.05;
    render(path, (800, 500), |root| {
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x1.max(1e-9), lo - pad..hi + pad)
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .x_desc(x_name)
            .y_desc(y_name)
            .x_label_formatter(&fmt_tick)
            .y_label_formatter(&fmt_tick)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(|e| plot_err(path, e))?;
        let blue = RGBColor(20, 60, 160);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), blue.stroke_width(2)))
            .map_err(|e| plot_err(path, e))?
            .label(name)
            .legend(legend_line(blue.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, blue.filled())))
            .map_err(|e| plot_err(path, e))?;
        if let Some((rname, r)) = reference {
            let grey = RGBColor(200, 80, 40);
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(0.0, r), (x1, r)],
                    8,
                    6,
                    grey.stroke_width(2),
                ))
                .map_err(|e| plot_err(path, e))?
                .label(rname)
                .legend(legend_line(grey.stroke_width(2)));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight, path)?;
        Ok(())
    })
}

/// Panels stacked one above the other, each with several labelled curves and a legend, against
/// a logarithmic x axis (x ≥ 1): (y name, [(label, points)]) per panel.
pub fn labelled_panels_log_x(
    path: &Path,
    title: &str,
    x_name: &str,
    panels: &[(&str, Vec<(String, Vec<(f64, f64)>)>)],
) -> Result<()> {
    register_font();
    if panels.is_empty() {
        return Ok(());
    }
    let x1 = panels
        .iter()
        .flat_map(|(_, s)| s.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)))
        .fold(2.0f64, f64::max);
    render(path, (900, 330 * panels.len() as u32 + 40), |root| {
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| plot_err(path, e))?;
        for (area, (y_name, series)) in root.split_evenly((panels.len(), 1)).iter().zip(panels) {
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .x_label_area_size(45)
                .y_label_area_size(70)
                .build_cartesian_2d((1.0..x1).log_scale(), -0.02..1.02)
                .map_err(|e| plot_err(path, e))?;
            chart
                .configure_mesh()
                .x_desc(x_name)
                .y_desc(*y_name)
                .x_label_formatter(&fmt_tick)
                .y_label_formatter(&fmt_tick)
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 16))
                .draw()
                .map_err(|e| plot_err(path, e))?;
            for (i, (label, pts)) in series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                chart
                    .draw_series(LineSeries::new(
                        pts.iter()
                            .copied()
                            .filter(|p| p.0 >= 1.0 && p.1.is_finite()),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| plot_err(path, e))?
                    .label(label.as_str())
                    .legend(legend_line(color.stroke_width(2)));
            }
            draw_legend(&mut chart, SeriesLabelPosition::LowerRight, path)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotters::coord::combinators::LogCoord;

    #[test]
    fn tick_labels_are_short_numbers() {
        for (v, want) in [
            (0.0, "0"),
            (0.1, "0.1"),
            (0.25, "0.25"),
            (1.0, "1"),
            (12.345, "12.3"),
            (0.123456, "0.123"),
            (-0.5, "-0.5"),
            (1500.0, "1500"),
            (0.0004, "4e-4"),
            (2.5e6, "2.5e6"),
        ] {
            assert_eq!(tick_label(v), want, "{v}");
        }
    }

    /// The ticks plotters picks for the axes oxgen draws, through the formatter every plot
    /// uses: log axes of a loss falling from 2 to 0.02 (the main job's loss.png went from about
    /// 1 to 0.1, labelled `0000000001`-style before) and of draws from 1 to 1,000, and linear
    /// axes from 0 to 1 and over thousands of steps. Each label is short and reads back as its
    /// tick, to 1%.
    #[test]
    fn axis_ticks_read_back() {
        let log: Vec<LogCoord<f64>> = vec![
            (0.02..2.2).log_scale().into(),
            (0.09..1.1).log_scale().into(),
            (1.0..1000.0).log_scale().into(),
        ];
        let lin: Vec<RangedCoordf64> = vec![(0.0..1.05).into(), (0.0..3000.0).into()];
        let mut ticks: Vec<f64> = log.iter().flat_map(|c| c.key_points(12)).collect();
        ticks.extend(lin.iter().flat_map(|c| c.key_points(12)));
        assert!(ticks.len() > 20, "{ticks:?}");
        for t in ticks {
            let label = tick_label(t);
            assert!(label.len() <= 6, "{t}: {label}");
            let back: f64 = label.parse().unwrap();
            assert!(
                (back - t).abs() <= 0.01 * t.abs().max(1e-12),
                "{t}: {label}"
            );
        }
    }

    /// Every plot kind renders at its size from known data. With OXGEN_DOC_IMAGES set to a
    /// folder (docs/images), the examples kept there are rewritten.
    #[test]
    fn every_plot_kind_renders() {
        let dir = std::env::var_os("OXGEN_DOC_IMAGES")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("oxgen-plot-kinds"));
        std::fs::create_dir_all(&dir).unwrap();
        let steps: Vec<usize> = (0..1500).step_by(10).collect();
        let losses: Vec<f64> = steps
            .iter()
            .map(|&s| {
                0.12 + 0.9 * (-(s as f64) / 300.0).exp() + 0.02 * ((s % 7) as f64 - 3.0) / 3.0
            })
            .collect();
        let nll: Vec<f64> = steps.iter().map(|&s| 1.5 - s as f64 / 500.0).collect();
        let curve: Vec<(f64, f64)> = (0..20)
            .map(|i| (i as f64 * 100.0, (i as f64).sqrt()))
            .collect();
        let circle: Vec<f32> = (0..400)
            .flat_map(|i| {
                let a = i as f32 * 0.0157;
                [2.0 * a.cos(), 2.0 * a.sin()]
            })
            .collect();
        let shifted: Vec<f32> = circle.iter().map(|v| v * 0.9 + 0.1).collect();
        let images: Vec<f32> = (0..16 * 64)
            .map(|i| ((i % 64) as f32 / 32.0) - 1.0)
            .collect();
        let trade: Vec<(f64, f64)> = [0.5, 1.0, 2.0, 4.0, 8.0]
            .iter()
            .map(|&e| (e, 0.9 - 0.3 / e))
            .collect();
        let by_n: Vec<(String, Vec<(f64, f64)>)> = ["best-of", "mean"]
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let pts = [1.0, 4.0, 16.0, 64.0]
                    .iter()
                    .map(|&n: &f64| (n, 0.5 + 0.1 * (k as f64 + n.log2() / 2.0)))
                    .collect();
                (name.to_string(), pts)
            })
            .collect();
        let path = |name: &str| dir.join(format!("plot-{name}"));
        loss_curve(&path("loss.png"), &steps, &losses, "loss (log axis)").unwrap();
        loss_curve(&path("loss_linear.png"), &steps, &nll, "NLL (linear axis)").unwrap();
        panels(
            &path("panels.png"),
            "metrics",
            &[
                ("loss", curve.clone()),
                ("accuracy", curve.iter().map(|p| (p.0, p.1 / 5.0)).collect()),
            ],
        )
        .unwrap();
        scatter(
            &path("scatter.png"),
            &shifted,
            &circle,
            "samples over reference",
        )
        .unwrap();
        image_grid(&path("grid.png"), &images, 1, 8, 8, 4).unwrap();
        let points = vec![
            ("diffusion".to_string(), 0.9, 0.8),
            ("gan".to_string(), 0.95, 0.4),
        ];
        labelled_points(
            &path("pr.png"),
            &points,
            "recall",
            "precision",
            "precision and recall",
        )
        .unwrap();
        curve_with_reference(
            &path("tradeoff.png"),
            "utility against ε",
            ("ε", "accuracy"),
            ("DP-SGD", &trade),
            Some(("without DP", 0.92)),
        )
        .unwrap();
        labelled_panels_log_x(&path("by_n.png"), "best-of-n", "n", &[("accuracy", by_n)]).unwrap();
        for (name, (w, h)) in [
            ("loss.png", (800, 500)),
            ("loss_linear.png", (800, 500)),
            ("panels.png", (800, 480)),
            ("scatter.png", (640, 640)),
            ("pr.png", (600, 600)),
            ("tradeoff.png", (800, 500)),
            ("by_n.png", (900, 370)),
        ] {
            let img = image::open(path(name)).unwrap();
            assert_eq!((img.width(), img.height()), (w, h), "{name}");
        }
    }
}
