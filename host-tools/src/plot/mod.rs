//! `picoformer plot`: training curves from a run's `log.csv`, and cross-attention heat maps.
//!
//! Drawing uses plotters' bitmap backend with the embedded DejaVu Sans font (ab_glyph), so no system
//! font libraries are needed; PNGs are encoded with the `png` crate and written atomically
//! (`NAME.tmp`, then renamed). This module depends on nothing else in the crate, so
//! [`attention_map`] can be called from `predict` and from tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// DejaVu Sans 2.37 (Bitstream Vera licence, see `DejaVuSans-LICENSE.txt` beside this file).
static FONT: &[u8] = include_bytes!("DejaVuSans.ttf");

/// The font family every text in our plots uses.
const FAMILY: &str = "sans-serif";

/// Arguments of `picoformer plot`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Reads DIR/log.csv as written by `picoformer train` (columns step, epoch, \
    loss, lr, target_tokens_per_second, dev_exact_match, dev_token_error_rate; the dev columns are \
    empty on rows without a dev evaluation) and draws two panels against the training step: the \
    training loss, and the dev exact match and token error rate in percent. A dev column whose \
    values never exceed 1 is read as fractions, otherwise as percentages."
)]
pub struct PlotArgs {
    /// Training run directory containing log.csv.
    pub dir: PathBuf,
    /// Output PNG [default: DIR/curves.png].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `picoformer plot`.
pub fn run(args: PlotArgs) -> anyhow::Result<()> {
    let log_path = args.dir.join("log.csv");
    let text = std::fs::read_to_string(&log_path).with_context(|| format!("cannot read {}", log_path.display()))?;
    let rows = parse_log(&text, &log_path.display().to_string())?;
    let out = args.out.unwrap_or_else(|| args.dir.join("curves.png"));
    let title = args
        .dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| args.dir.display().to_string());
    training_curves(&out, &rows, &title)?;
    let evals = rows.iter().filter(|r| r.dev_exact_match.is_some()).count();
    println!("{} log rows, {evals} dev evaluations -> {}", rows.len(), out.display());
    Ok(())
}

/// One row of `log.csv`; absent or empty values are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    /// Optimizer step.
    pub step: f64,
    /// Epoch (possibly fractional).
    pub epoch: Option<f64>,
    /// Training loss.
    pub loss: Option<f64>,
    /// Dev exact match as a fraction in 0..=1 (percentages in the file are converted).
    pub dev_exact_match: Option<f64>,
    /// Dev token error rate as a fraction (percentages in the file are converted).
    pub dev_token_error_rate: Option<f64>,
}

/// Parses the text of a `log.csv`: a header naming the columns (at least `step` and `loss`), then
/// one row per logged step. `name` is the file name used in errors, which also give the line.
pub fn parse_log(text: &str, name: &str) -> anyhow::Result<Vec<LogRow>> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().with_context(|| format!("{name} is empty"))?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let find = |c: &str| cols.iter().position(|h| *h == c);
    let step_col = find("step").with_context(|| format!("{name}:1: no `step` column"))?;
    let loss_col = find("loss").with_context(|| format!("{name}:1: no `loss` column"))?;
    let (epoch_col, em_col, ter_col) = (find("epoch"), find("dev_exact_match"), find("dev_token_error_rate"));
    let mut rows = Vec::new();
    for (i, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let value = |col: Option<usize>, what: &str| -> anyhow::Result<Option<f64>> {
            match col.and_then(|c| fields.get(c)) {
                None | Some(&"") => Ok(None),
                Some(v) => v
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| anyhow::anyhow!("{name}:{}: bad {what} value `{v}`", i + 1)),
            }
        };
        let step = value(Some(step_col), "step")?.with_context(|| format!("{name}:{}: empty step", i + 1))?;
        rows.push(LogRow {
            step,
            epoch: value(epoch_col, "epoch")?,
            loss: value(Some(loss_col), "loss")?,
            dev_exact_match: value(em_col, "dev_exact_match")?,
            dev_token_error_rate: value(ter_col, "dev_token_error_rate")?,
        });
    }
    if rows.is_empty() {
        anyhow::bail!("{name} has no rows yet");
    }
    let getters: [fn(&mut LogRow) -> &mut Option<f64>; 2] =
        [|r| &mut r.dev_exact_match, |r| &mut r.dev_token_error_rate];
    for get in getters {
        // A column whose values exceed 1 was written in percent: bring it to fractions.
        if rows.iter_mut().any(|r| get(r).is_some_and(|v| v > 1.0)) {
            for r in rows.iter_mut() {
                if let Some(v) = get(r) {
                    *v /= 100.0;
                }
            }
        }
    }
    Ok(rows)
}

/// Draws the training loss (top) and the dev exact match and token error rate in percent (bottom)
/// against the step into the PNG `path`.
pub fn training_curves(path: &Path, rows: &[LogRow], title: &str) -> anyhow::Result<()> {
    let loss: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.loss.filter(|l| l.is_finite()).map(|l| (r.step, l)))
        .collect();
    let em: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.dev_exact_match.map(|v| (r.step, 100.0 * v)))
        .collect();
    let ter: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.dev_token_error_rate.map(|v| (r.step, 100.0 * v)))
        .collect();
    if loss.is_empty() && em.is_empty() {
        anyhow::bail!("nothing to plot: no finite loss and no dev evaluation");
    }
    let x_max = rows.iter().map(|r| r.step).fold(1.0f64, f64::max);
    let (w, h) = (1000u32, 760u32);
    let png = render(w, h, |root| {
        let root = root.titled(&format!("training run: {title}"), (FAMILY, 24))?;
        let (top, bottom) = root.split_vertically(root.dim_in_pixel().1 / 2);

        // Loss panel.
        let (lo, hi) = padded_range(loss.iter().map(|p| p.1), 0.05);
        let mut chart = ChartBuilder::on(&top)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .caption("training loss", (FAMILY, 18))
            .build_cartesian_2d(0.0..x_max, lo..hi)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        // Many noisy points: a thin light raw line under a moving average; few: one solid line.
        let noisy = loss.len() > 60;
        let raw_style = if noisy {
            RGBColor(160, 190, 230).stroke_width(1)
        } else {
            BLUE.stroke_width(2)
        };
        chart
            .draw_series(LineSeries::new(loss.iter().copied(), raw_style))?
            .label("loss")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], raw_style));
        if noisy {
            let smooth = moving_average(&loss, loss.len() / 50);
            chart
                .draw_series(LineSeries::new(smooth, BLUE.stroke_width(2)))?
                .label("loss (moving average)")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;

        // Dev panel.
        let best = em.iter().copied().fold(None, |b: Option<(f64, f64)>, p| match b {
            Some(b) if b.1 >= p.1 => Some(b),
            _ => Some(p),
        });
        let caption = match best {
            Some((s, v)) => format!("dev set (best exact match {v:.2}% at step {s})"),
            None => "dev set (no evaluation yet)".to_string(),
        };
        let mut chart = ChartBuilder::on(&bottom)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .caption(caption, (FAMILY, 18))
            .build_cartesian_2d(0.0..x_max, 0.0..100.0)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("percent")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        let green = RGBColor(0, 140, 70);
        let orange = RGBColor(230, 120, 0);
        for (series, colour, name) in [(&em, green, "exact match"), (&ter, orange, "token error rate")] {
            if series.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(series.iter().copied(), colour.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
            if series.len() <= 200 {
                chart.draw_series(series.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
            }
        }
        if let Some(b) = best {
            chart.draw_series(std::iter::once(Circle::new(b, 6, green.stroke_width(2))))?;
        }
        if !em.is_empty() || !ter.is_empty() {
            chart
                .configure_series_labels()
                .label_font((FAMILY, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .position(SeriesLabelPosition::MiddleRight)
                .draw()?;
        }
        Ok(())
    })?;
    crate::fsutil::write_atomic(path, &png)
}

/// Draws a heat map of attention `weights` (row-major, `row_labels.len()` rows by
/// `col_labels.len()` columns; rows are output tokens, columns input symbols) into the PNG `path`.
/// Weights within 0..=1 are coloured on that scale (white 0, dark blue 1); otherwise on their
/// min..max range. The colour bar on the right shows the scale.
pub fn attention_map(
    path: impl AsRef<Path>,
    row_labels: &[String],
    col_labels: &[String],
    weights: &[f32],
    title: &str,
) -> anyhow::Result<()> {
    let path = path.as_ref();
    let (rows, cols) = (row_labels.len(), col_labels.len());
    if rows == 0 || cols == 0 {
        anyhow::bail!("attention map needs at least one row and one column, got {rows}x{cols}");
    }
    if weights.len() != rows * cols {
        anyhow::bail!(
            "attention map: {} weights for {rows} rows x {cols} columns (expected {})",
            weights.len(),
            rows * cols
        );
    }
    if let Some(i) = weights.iter().position(|w| !w.is_finite()) {
        anyhow::bail!("attention map: weight {i} is not finite ({})", weights[i]);
    }
    let wmin = weights.iter().copied().fold(f32::INFINITY, f32::min);
    let wmax = weights.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (lo, hi) = if wmin >= 0.0 && wmax <= 1.0 {
        (0.0, 1.0)
    } else if wmax > wmin {
        (wmin, wmax)
    } else {
        (wmin - 0.5, wmin + 0.5)
    };

    let cell = (900 / cols.max(rows) as u32).clamp(14, 44);
    let label_font = (cell as f64 * 0.45).clamp(10.0, 18.0);
    let char_w = label_font * 0.62;
    let longest = |l: &[String]| l.iter().map(|s| s.chars().count()).max().unwrap_or(1) as f64;
    let rotate_cols = longest(col_labels) * char_w > cell as f64 * 0.95;
    let left = (longest(row_labels) * char_w + 50.0) as u32;
    let col_label_h = if rotate_cols {
        (longest(col_labels) * char_w + 16.0) as u32
    } else {
        28
    };
    let top = 56u32;
    let bottom = col_label_h + 34;
    let bar_gap = 24u32;
    let bar_w = 18u32;
    let right = bar_gap + bar_w + 56;
    let grid_w = cell * cols as u32;
    let grid_h = cell * rows as u32;
    let title_w = (title.chars().count() as f64 * 11.0) as u32 + 40;
    let w = (left + grid_w + right).max(title_w).max(320);
    let h = top + grid_h + bottom;

    let png = render(w, h, |root| {
        let font = |size: f64| (FAMILY, size).into_font().color(&BLACK);
        let centred = Pos::new(HPos::Center, VPos::Center);
        root.draw(&Text::new(
            title.to_string(),
            (w as i32 / 2, 24),
            font(20.0).pos(centred),
        ))?;
        let x0 = left as i32;
        let y0 = top as i32;
        let c = cell as i32;
        for r in 0..rows {
            for k in 0..cols {
                let v = (weights[r * cols + k] - lo) / (hi - lo);
                let (x, y) = (x0 + k as i32 * c, y0 + r as i32 * c);
                root.draw(&Rectangle::new([(x, y), (x + c, y + c)], blues(v).filled()))?;
            }
        }
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + grid_w as i32, y0 + grid_h as i32)],
            RGBColor(120, 120, 120),
        ))?;
        // Row labels (output tokens), right-aligned left of the grid.
        for (r, label) in row_labels.iter().enumerate() {
            let pos = (x0 - 8, y0 + r as i32 * c + c / 2);
            root.draw(&Text::new(
                label.clone(),
                pos,
                font(label_font).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
        }
        // Column labels (input symbols) under the grid.
        let yl = y0 + grid_h as i32 + 8;
        for (k, label) in col_labels.iter().enumerate() {
            let x = x0 + k as i32 * c + c / 2;
            let style = if rotate_cols {
                font(label_font)
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(HPos::Right, VPos::Center))
            } else {
                font(label_font).pos(Pos::new(HPos::Center, VPos::Top))
            };
            root.draw(&Text::new(label.clone(), (x, yl), style))?;
        }
        let desc = font(14.0).color(&RGBColor(90, 90, 90));
        root.draw(&Text::new(
            "input",
            (x0 + grid_w as i32 / 2, yl + col_label_h as i32 + 4),
            desc.pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        root.draw(&Text::new(
            "output",
            (14, y0 + grid_h as i32 / 2),
            desc.transform(FontTransform::Rotate270).pos(centred),
        ))?;
        // Colour bar.
        let bx = x0 + grid_w as i32 + bar_gap as i32;
        let steps = grid_h.max(1) as i32;
        for i in 0..steps {
            let v = 1.0 - i as f32 / (steps - 1).max(1) as f32;
            root.draw(&Rectangle::new(
                [(bx, y0 + i), (bx + bar_w as i32, y0 + i + 1)],
                blues(v).filled(),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(bx, y0), (bx + bar_w as i32, y0 + steps)],
            RGBColor(120, 120, 120),
        ))?;
        let tick = font(12.0).pos(Pos::new(HPos::Left, VPos::Center));
        for (v, y) in [(hi, y0), (lo, y0 + steps)] {
            root.draw(&Text::new(format!("{v:.2}"), (bx + bar_w as i32 + 6, y), tick.clone()))?;
        }
        Ok(())
    })?;
    crate::fsutil::write_atomic(path, &png)
}

/// A white-to-dark-blue colour for `v` in 0..=1 (clamped).
fn blues(v: f32) -> RGBColor {
    const STOPS: [(f32, f32, f32); 5] = [
        (255.0, 255.0, 255.0),
        (198.0, 219.0, 239.0),
        (107.0, 174.0, 214.0),
        (33.0, 113.0, 181.0),
        (8.0, 48.0, 107.0),
    ];
    let t = v.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f32;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f32, y: f32| (x + (y - x) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// `min..max` of `values` widened by `pad` of its span on each side (a unit range if empty or flat).
fn padded_range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) };
    (
        (lo - pad * span).max(if lo >= 0.0 { 0.0 } else { f64::MIN }),
        hi + pad * span,
    )
}

/// Centred moving average of the y values of `points` over `half` points on each side (the
/// window shrinks at the ends).
fn moving_average(points: &[(f64, f64)], half: usize) -> Vec<(f64, f64)> {
    let mut prefix = Vec::with_capacity(points.len() + 1);
    prefix.push(0.0);
    for p in points {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + p.1);
    }
    (0..points.len())
        .map(|i| {
            let (a, b) = (i.saturating_sub(half), (i + half + 1).min(points.len()));
            (points[i].0, (prefix[b] - prefix[a]) / (b - a) as f64)
        })
        .collect()
}

/// Registers the embedded font with plotters once.
fn ensure_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    anyhow::ensure!(ok, "the embedded DejaVu Sans font could not be loaded");
    Ok(())
}

/// Renders a `w` x `h` white canvas with `draw` and returns it encoded as PNG.
fn render<F>(w: u32, h: u32, draw: F) -> anyhow::Result<Vec<u8>>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()>,
{
    ensure_font()?;
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw(&root)?;
        root.present().map_err(plot_error)?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().context("cannot encode PNG")?;
        writer.write_image_data(&rgb).context("cannot encode PNG")?;
    }
    Ok(png_bytes)
}

/// Converts a plotters error (not `Send + Sync` for every backend) to anyhow.
fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing failed: {e}")
}
