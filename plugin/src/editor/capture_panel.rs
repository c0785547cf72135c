//! The captured bars as a strip with a waveform, and the bar range the request uses. Clicking a
//! bar starts the range there; shift-click extends it. When the host sends a loop range, the
//! range follows it (until the user picks another).

use crate::session::Session;
use crate::transport::TransportSnapshot;

const BAR_WIDTH: f32 = 22.0;
const STRIP_HEIGHT: f32 = 44.0;

#[derive(Default)]
pub struct CapturePanel {
    /// The host loop last applied to the range, so a loop is applied once, not every frame.
    applied_loop: Option<(f64, f64)>,
}

/// The bar range (first, count) that covers a host loop in quarters.
pub fn loop_bars(loop_quarters: (f64, f64), quarters_per_bar: f64) -> (u32, u32) {
    let first = (loop_quarters.0 / quarters_per_bar + 1e-9).floor().max(0.0);
    let end = (loop_quarters.1 / quarters_per_bar - 1e-9).ceil().max(first + 1.0);
    (first as u32, (end - first) as u32)
}

impl CapturePanel {
    pub fn show(&mut self, ui: &mut egui::Ui, session: &Session, transport: &TransportSnapshot) {
        let qpb = transport.grid().meter().quarters_per_bar();
        if let Some(host_loop) = transport.loop_quarters {
            if self.applied_loop != Some(host_loop) {
                self.applied_loop = Some(host_loop);
                let (first, count) = loop_bars(host_loop, qpb);
                let mut state = session.params.session.write();
                (state.start_bar, state.length_bars) = (first, count);
            }
        }

        let (summary, seconds, bytes, limit) = {
            let capture = session.capture();
            (capture.summary(), capture.seconds(), capture.bytes(), capture.limit_s())
        };
        let (start, length) = {
            let s = session.params.session.read();
            (s.start_bar as i64, s.length_bars as i64)
        };
        let last = summary.last().map_or(start + length, |b| b.number.max(start + length - 1) + 1);
        let first = summary.first().map_or(start, |b| b.number.min(start)).max(0);
        egui::ScrollArea::horizontal().id_salt("capture strip").show(ui, |ui| {
            let bars = (last - first).max(1) as usize;
            let (rect, response) = ui.allocate_exact_size(
                egui::vec2(bars as f32 * BAR_WIDTH, STRIP_HEIGHT),
                egui::Sense::click(),
            );
            let painter = ui.painter_at(rect);
            let visuals = ui.visuals();
            for k in 0..bars {
                let number = first + k as i64;
                let x = rect.left() + k as f32 * BAR_WIDTH;
                let cell = egui::Rect::from_min_size(egui::pos2(x, rect.top()), egui::vec2(BAR_WIDTH - 1.0, STRIP_HEIGHT));
                let selected = number >= start && number < start + length;
                let fill = if selected { visuals.selection.bg_fill } else { visuals.extreme_bg_color };
                painter.rect_filled(cell, 2.0, fill);
                match summary.iter().find(|b| b.number == number) {
                    Some(bar) if bar.complete => {
                        let mid = cell.center().y;
                        let step = cell.width() / bar.overview.len().max(1) as f32;
                        for (i, peak) in bar.overview.iter().enumerate() {
                            let h = peak.min(1.0) * (STRIP_HEIGHT / 2.0 - 4.0);
                            let px = cell.left() + (i as f32 + 0.5) * step;
                            painter.line_segment([egui::pos2(px, mid - h), egui::pos2(px, mid + h)], (1.0, visuals.strong_text_color()));
                        }
                    }
                    Some(_) => {
                        // Partly captured: a gap the user can see, never audio.
                        painter.text(cell.center(), egui::Align2::CENTER_CENTER, "~", egui::FontId::monospace(12.0), visuals.warn_fg_color);
                    }
                    None => {}
                }
                if number % 4 == 0 {
                    painter.text(cell.left_top() + egui::vec2(2.0, 1.0), egui::Align2::LEFT_TOP, format!("{}", number + 1), egui::FontId::proportional(9.0), visuals.weak_text_color());
                }
            }
            if let Some(pos) = response.interact_pointer_pos().filter(|_| response.clicked()) {
                let number = first + ((pos.x - rect.left()) / BAR_WIDTH).floor() as i64;
                let shift = ui.input(|i| i.modifiers.shift);
                let mut state = session.params.session.write();
                if shift && number >= state.start_bar as i64 {
                    state.length_bars = (number - state.start_bar as i64 + 1) as u32;
                } else {
                    state.start_bar = number.max(0) as u32;
                }
            }
        });
        ui.horizontal(|ui| {
            ui.weak(format!(
                "{} bars captured, {:.0} of {:.0} s ({:.1} MB). Click a bar to start the range there, shift-click to end it.",
                summary.iter().filter(|b| b.complete).count(),
                seconds,
                limit,
                bytes as f64 / 1e6
            ));
            if ui.button("Clear").clicked() {
                session.capture().clear();
            }
        });
        ui.horizontal(|ui| {
            ui.label("Keep the last");
            let mut keep = limit;
            let drag = egui::DragValue::new(&mut keep)
                .range(crate::capture_store::MIN_CAPTURE_LIMIT_S..=3600.0)
                .speed(5.0)
                .suffix(" s");
            if ui.add(drag).on_hover_text("Older bars are dropped; remembered for this machine").changed() {
                session.set_capture_limit(keep);
            }
            // Stereo f32 at the host rate.
            let most_bytes = limit * transport.sample_rate as f64 * 2.0 * 4.0;
            ui.weak(format!("of input (at most {:.0} MB at {:.1} kHz)", most_bytes / 1e6, transport.sample_rate / 1000.0));
        });
        let dropped = session.audio.capture_dropped_blocks.load(std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            ui.colored_label(ui.visuals().warn_fg_color, format!("{dropped} capture blocks were lost (the machine was too busy); those bars are marked partial."));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::loop_bars;

    #[test]
    fn a_host_loop_selects_the_bars_it_covers() {
        assert_eq!(loop_bars((16.0, 32.0), 4.0), (4, 4));
        assert_eq!(loop_bars((0.0, 14.0), 3.5), (0, 4));
        assert_eq!(loop_bars((5.0, 6.0), 4.0), (1, 1));
    }
}
