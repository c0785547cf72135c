//! Backline: ACE-Step 1.5 music generation inside the DAW, as a CLAP and VST3 plugin.
//!
//! This file holds the plugin struct, its lifecycle and the exports. The audio thread's work per
//! block: read the host transport (`transport.rs`), publish it for the editor, measure input
//! levels, and output the main input (plus the guide click, `click.rs`) at the output gain.

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nice_plug::prelude::*;
use nice_plug_egui::{EguiEditor, EguiEditorState, RepaintNotifier};

pub mod click;
pub mod editor;
pub mod params;
pub mod state;
pub mod transport;

use click::GuideClick;
use params::BacklineParams;
use transport::{SharedTransport, TransportSnapshot};

/// What the audio thread shares with the editor. Written by the audio thread only, lock-free.
#[derive(Default)]
pub struct AudioShared {
    pub transport: SharedTransport,
    /// Peak absolute sample of the last block on the main and sidechain inputs.
    pub main_in_peak: AtomicF32,
    pub sidechain_in_peak: AtomicF32,
}

pub struct Backline {
    /// Shared with the host and the editor; the audio thread reads smoothed values.
    params: Arc<BacklineParams>,
    /// Audio thread writes, editor reads.
    shared: Arc<AudioShared>,
    /// Editor window size and open flag; the audio thread only asks `is_open`.
    editor_state: Arc<EguiEditorState>,
    /// Audio thread pokes it so the open editor redraws with the new transport.
    repaint: RepaintNotifier,
    /// Audio thread only. Set in `activate`.
    sample_rate: f32,
    click: GuideClick,
    blocks_processed: u64,
    /// Debug builds only: allocate inside `process` when the environment asks, so a test can
    /// prove that `assert_process_allocs` is armed (the host must abort). Read in `activate`.
    #[cfg(debug_assertions)]
    debug_alloc_in_process: bool,
}

impl Default for Backline {
    // Cheap: hosts create instances to scan them. Nothing here loads or allocates much.
    fn default() -> Self {
        Self {
            params: Arc::new(BacklineParams::default()),
            shared: Arc::new(AudioShared::default()),
            editor_state: editor::default_state(),
            repaint: RepaintNotifier::new(),
            sample_rate: 48_000.0,
            click: GuideClick::new(48_000.0),
            blocks_processed: 0,
            #[cfg(debug_assertions)]
            debug_alloc_in_process: false,
        }
    }
}

fn peak(channels: &[&mut [f32]]) -> f32 {
    channels.iter().flat_map(|c| c.iter()).fold(0.0f32, |m, s| m.max(s.abs()))
}

impl Plugin for Backline {
    const NAME: &'static str = "Backline";
    const VENDOR: &'static str = "Backline";
    const URL: &'static str = env!("CARGO_PKG_REPOSITORY");
    const EMAIL: &'static str = "hello@backline.invalid";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[AudioIOLayout {
        main_input_channels: NonZeroU32::new(2),
        main_output_channels: NonZeroU32::new(2),
        aux_input_ports: &[new_nonzero_u32(2)],
        aux_output_ports: &[],
        names: PortNames {
            layout: Some("Stereo + sidechain"),
            // Left unset on purpose: nice-plug 0.4.2's `main_output_name()` returns the *input*
            // name when one is set; unset, the ports are "Input" and "Output".
            main_input: None,
            main_output: None,
            aux_inputs: &["Sidechain"],
            aux_outputs: &[],
        },
    }];

    type SysExMessage = ();
    type BackgroundTask = ();
    type Editor = EguiEditor<editor::BacklineEditor>;

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::create(
            self.params.clone(),
            self.shared.clone(),
            self.editor_state.clone(),
            self.repaint.clone(),
        )
    }

    fn filter_state(state: &mut PluginState) {
        state::filter_saved_state(state);
    }

    fn activate(
        &mut self,
        _layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        _context: &mut impl ActivateContext<Self>,
    ) -> bool {
        // The sample rate may differ from the last activation; everything timed restarts here.
        self.sample_rate = buffer_config.sample_rate;
        self.click = GuideClick::new(buffer_config.sample_rate);
        self.blocks_processed = 0;
        #[cfg(debug_assertions)]
        {
            self.debug_alloc_in_process =
                std::env::var_os("BACKLINE_DEBUG_ALLOC_IN_PROCESS").is_some();
        }
        true
    }

    fn reset(&mut self) {
        self.click.reset();
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let snapshot =
            TransportSnapshot::from_host(context.transport(), self.sample_rate, self.blocks_processed);
        self.blocks_processed = self.blocks_processed.wrapping_add(1);
        self.shared.transport.publish(&snapshot);
        #[cfg(debug_assertions)]
        if self.debug_alloc_in_process {
            std::hint::black_box(vec![0u8; 64]);
        }

        // The meters are for the editor only: skip the scan while it is closed.
        if self.editor_state.is_open() {
            self.shared.main_in_peak.store(peak(buffer.as_slice_immutable()), Ordering::Relaxed);
            let sidechain_peak = aux.inputs.first().map_or(0.0, |b| peak(b.as_slice_immutable()));
            self.shared.sidechain_in_peak.store(sidechain_peak, Ordering::Relaxed);
            self.repaint.request_repaint();
        }

        if self.params.bypass.value() {
            // The host's buffer already holds the main input: leave it untouched.
            return ProcessStatus::Normal;
        }

        self.click.start_block(&snapshot, self.params.click.value(), buffer.samples());
        for (i, frame) in buffer.iter_samples().enumerate() {
            let gain = self.params.gain.smoothed.next();
            let click = self.click.next_sample(i);
            for sample in frame {
                *sample = (*sample + click) * gain;
            }
        }
        ProcessStatus::Normal
    }
}

impl ClapPlugin for Backline {
    const CLAP_ID: &'static str = "audio.backline.backline";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Generate, repaint and layer music at the host's tempo with ACE-Step 1.5");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] =
        &[ClapFeature::AudioEffect, ClapFeature::Stereo, ClapFeature::Sampler, ClapFeature::Utility];
}

impl Vst3Plugin for Backline {
    const VST3_CLASS_ID: [u8; 16] = *b"BacklineACEStep1";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Fx, Vst3SubCategory::Generator, Vst3SubCategory::Tools];
}

nice_export_clap!(Backline);
nice_export_vst3!(Backline);
