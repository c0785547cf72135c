//! Backline: ACE-Step 1.5 music generation inside the DAW, as a CLAP and VST3 plugin.
//!
//! The plugin is split by the thread that owns each part:
//! - [`processor::Processor`], built in `activate`, is all the audio thread touches: transport,
//!   guide click, capture writer, take voices and the audio ends of the bridge;
//! - [`session::Session`] is everything else (engine backend, captured bars, takes, the session
//!   ends of the bridge, the service thread), shared with the editor;
//! - [`bridge`] holds the wait-free queues between them.
//!
//! This file holds the plugin struct, its lifecycle and the exports.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use nice_plug::prelude::*;
use nice_plug_egui::{EguiEditor, EguiEditorState, RepaintNotifier};

#[cfg(feature = "alloc-check")]
mod alloc_check;
pub mod bridge;
pub mod capture;
pub mod capture_store;
pub mod click;
pub mod draft;
pub mod editor;
pub mod folder_dialog;
pub mod model_download;
pub mod params;
pub mod playback;
pub mod presets;
pub mod processor;
pub mod session;
pub mod server_models;
pub mod settings;
pub mod state;
pub mod takes;
pub mod transport;

use params::BacklineParams;
use processor::Processor;
use session::Session;
use transport::SharedTransport;

/// What the audio thread publishes for the other threads. Written by the audio thread only,
/// lock-free.
#[derive(Default)]
pub struct AudioShared {
    pub transport: SharedTransport,
    /// Peak absolute sample of the last block on the main and sidechain inputs.
    pub main_in_peak: AtomicF32,
    pub sidechain_in_peak: AtomicF32,
    /// Counts the times the Generate parameter turned on; the session submits on each.
    pub generate_requests: AtomicU64,
    /// The transport of the block in which Generate last turned on: the job is cut to that
    /// tempo and meter even if the session sees the request a few blocks later.
    pub generate_transport: SharedTransport,
    /// Capture blocks lost because the capture thread fell behind.
    pub capture_dropped_blocks: AtomicU64,
    /// Slot 1 is auditioning (playing with the transport stopped).
    pub auditioning: AtomicBool,
}

pub struct Backline {
    /// Shared with the host, the editor and the session.
    params: Arc<BacklineParams>,
    /// Audio thread writes, everyone else reads.
    shared: Arc<AudioShared>,
    /// Main/GUI/service/worker threads; never the audio thread.
    session: Arc<Session>,
    /// Editor window size and open flag; the audio thread only asks `is_open`.
    editor_state: Arc<EguiEditorState>,
    /// The audio thread pokes it so the open editor redraws with the new transport.
    repaint: RepaintNotifier,
    /// Audio thread, between `activate` (main thread, which builds it) and the next `activate`.
    processor: Option<Processor>,
    /// Checked builds only (debug, or `alloc-check`): allocate inside `process` when the
    /// environment asks, so a test can prove the allocation check is armed (the host must abort).
    /// Read in `activate`.
    #[cfg(any(debug_assertions, feature = "alloc-check"))]
    alloc_probe: bool,
}

impl Default for Backline {
    // Cheap: hosts create instances to scan them. Nothing here loads, spawns or allocates much.
    fn default() -> Self {
        let params = Arc::new(BacklineParams::default());
        let shared = Arc::new(AudioShared::default());
        Self {
            session: Session::new(Arc::clone(&params), Arc::clone(&shared)),
            params,
            shared,
            editor_state: editor::default_state(),
            repaint: RepaintNotifier::new(),
            processor: None,
            #[cfg(any(debug_assertions, feature = "alloc-check"))]
            alloc_probe: false,
        }
    }
}

impl Drop for Backline {
    fn drop(&mut self) {
        // The engine's worker is joined here, on the host's main thread.
        self.session.shutdown();
    }
}

/// Names of the take output buses, one per slot.
const TAKE_BUS_NAMES: [&str; bridge::TAKE_SLOTS] = ["Take 1", "Take 2", "Take 3", "Take 4"];

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
        aux_output_ports: &[new_nonzero_u32(2); bridge::TAKE_SLOTS],
        names: PortNames {
            layout: Some("Stereo + sidechain, 4 take buses"),
            // Left unset on purpose: nice-plug 0.4.2's `main_output_name()` returns the *input*
            // name when one is set; unset, the ports are "Input" and "Output".
            main_input: None,
            main_output: None,
            aux_inputs: &["Sidechain"],
            aux_outputs: &TAKE_BUS_NAMES,
        },
    }];

    type SysExMessage = ();
    type BackgroundTask = ();
    type Editor = EguiEditor<editor::BacklineEditor>;

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::create(Arc::clone(&self.session), self.editor_state.clone(), self.repaint.clone())
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
        // Main thread. Everything timed restarts here: the rate and block size may have changed.
        self.session.start();
        let max_block = buffer_config.max_buffer_size as usize;
        let ends = self.session.connect(buffer_config.sample_rate, buffer_config.max_buffer_size);
        self.processor = Some(Processor::new(
            Arc::clone(&self.params),
            Arc::clone(&self.shared),
            buffer_config.sample_rate,
            max_block,
            buffer_config.process_mode,
            ends,
        ));
        #[cfg(any(debug_assertions, feature = "alloc-check"))]
        {
            self.alloc_probe = std::env::var_os("BACKLINE_ALLOC_PROBE").is_some();
        }
        true
    }

    fn reset(&mut self) {
        if let Some(processor) = &mut self.processor {
            processor.reset();
        }
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        #[cfg(feature = "alloc-check")]
        return alloc_check::forbid(|| self.process_block(buffer, aux, context));
        #[cfg(not(feature = "alloc-check"))]
        self.process_block(buffer, aux, context)
    }
}

impl Backline {
    /// Audio thread: one host block.
    fn process_block(
        &mut self,
        buffer: &mut Buffer,
        aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        #[cfg(any(debug_assertions, feature = "alloc-check"))]
        if self.alloc_probe {
            std::hint::black_box(vec![0u8; 64]);
        }
        let editor_open = self.editor_state.is_open();
        if let Some(processor) = &mut self.processor {
            processor.process(buffer, aux, context.transport(), editor_open);
        }
        if editor_open {
            self.repaint.request_repaint();
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
