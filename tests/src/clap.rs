//! A minimal CLAP host (clack-host) for driving the Backline bundle from tests: load, activate at
//! any rate and block size, process with a transport and parameter events, save and load state.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clack_extensions::audio_ports::{AudioPortInfoBuffer, PluginAudioPorts};
use clack_extensions::params::{ParamInfoBuffer, ParamInfoFlags, PluginParams};
use clack_extensions::render::{PluginRender, RenderMode};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::{ParamValueEvent, TransportEvent, TransportFlags};
use clack_host::events::{EventFlags, EventHeader, Pckn};
use clack_host::prelude::*;
use clack_host::utils::{BeatTime, SecondsTime};

pub const PLUGIN_ID: &[u8] = b"audio.backline.backline";

pub struct TestShared;
impl SharedHandler<'_> for TestShared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {}
}
pub struct TestHost;
impl HostHandlers for TestHost {
    type Shared<'a> = TestShared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();
}

/// The plugin library, loaded once per test process and never unloaded, as a DAW does. Dropping
/// the last entry would `dlclose` the library while nice-plug's threads for instances that just
/// ended may still run its code (tests running in parallel crashed with SIGSEGV that way).
fn loaded_entry(path: &Path) -> PluginEntry {
    static ENTRIES: Mutex<BTreeMap<PathBuf, PluginEntry>> = Mutex::new(BTreeMap::new());
    let mut entries = ENTRIES.lock().unwrap_or_else(|e| e.into_inner());
    entries
        .entry(path.to_path_buf())
        .or_insert_with(|| {
            // SAFETY: loading a plugin runs its code; this is the plugin under test.
            unsafe { PluginEntry::load(path) }
                .unwrap_or_else(|e| panic!("load {}: {e:?}", path.display()))
        })
        .clone()
}

/// A parameter as the host sees it.
#[derive(Debug, Clone)]
pub struct ParamDesc {
    pub id: ClapId,
    pub name: String,
    pub flags: ParamInfoFlags,
    pub min: f64,
    pub max: f64,
    pub default: f64,
}

/// An audio port as the host sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PortDesc {
    pub name: String,
    pub channels: u32,
}

/// One loaded plugin instance. Field order matters: the processor and instance drop before the
/// entry (the library) they come from.
pub struct ClapPlugin {
    processor: Option<StartedPluginAudioProcessor<TestHost>>,
    instance: PluginInstance<TestHost>,
    _entry: PluginEntry,
    pub params: Vec<ParamDesc>,
    steady_time: u64,
    output_ports: usize,
    buses: Vec<[Vec<f32>; 2]>,
}

impl ClapPlugin {
    pub fn load(path: &Path) -> Self {
        let host_info =
            HostInfo::new("backline-tests", "backline", "https://example.invalid", "0.1").unwrap();
        let entry = loaded_entry(path);
        let factory = entry.get_plugin_factory().expect("plugin factory");
        let descriptor = factory
            .plugin_descriptors()
            .find(|d| d.id().is_some_and(|id| id.to_bytes() == PLUGIN_ID))
            .expect("Backline descriptor in the factory");
        let id = descriptor.id().unwrap().to_owned();
        let instance =
            PluginInstance::<TestHost>::new(|_| TestShared, |_| (), &entry, &id, &host_info)
                .expect("create instance");
        let mut plugin = Self {
            processor: None,
            instance,
            _entry: entry,
            params: Vec::new(),
            steady_time: 0,
            output_ports: 0,
            buses: Vec::new(),
        };
        plugin.params = plugin.read_params();
        plugin.output_ports = plugin.audio_ports(false).len();
        plugin
    }

    fn read_params(&mut self) -> Vec<ParamDesc> {
        let mut handle = self.instance.plugin_handle();
        let ext: PluginParams = handle.get_extension().expect("params extension");
        let mut buffer = ParamInfoBuffer::new();
        (0..ext.count(&mut handle))
            .map(|i| {
                let info = ext.get_info(&mut handle, i, &mut buffer).expect("param info");
                ParamDesc {
                    id: info.id,
                    name: String::from_utf8_lossy(info.name).into_owned(),
                    flags: info.flags,
                    min: info.min_value,
                    max: info.max_value,
                    default: info.default_value,
                }
            })
            .collect()
    }

    /// The id of the parameter whose display name is `name`.
    pub fn param(&self, name: &str) -> ClapId {
        self.params.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no param {name:?}")).id
    }

    /// Current values of all parameters, by display name.
    pub fn param_values(&mut self) -> HashMap<String, f64> {
        let mut handle = self.instance.plugin_handle();
        let ext: PluginParams = handle.get_extension().expect("params extension");
        self.params
            .iter()
            .map(|p| (p.name.clone(), ext.get_value(&mut handle, p.id).expect("param value")))
            .collect()
    }

    /// The value the plugin's own parser gives `text` for parameter `name` (as a host's text
    /// entry does).
    pub fn text_to_value(&mut self, name: &str, text: &str) -> f64 {
        let id = self.param(name);
        let mut handle = self.instance.plugin_handle();
        let ext: PluginParams = handle.get_extension().expect("params extension");
        let text = std::ffi::CString::new(text).unwrap();
        ext.text_to_value(&mut handle, id, &text).unwrap_or_else(|| panic!("{name}: cannot parse {text:?}"))
    }

    /// The text the plugin shows for `value` of parameter `name`.
    pub fn value_to_text(&mut self, name: &str, value: f64) -> String {
        let id = self.param(name);
        let mut handle = self.instance.plugin_handle();
        let ext: PluginParams = handle.get_extension().expect("params extension");
        let mut buffer = [0u8; 256];
        let text = ext
            .value_to_text(&mut handle, id, value, &mut buffer)
            .unwrap_or_else(|e| panic!("{name}: no text for {value}: {e:?}"));
        String::from_utf8_lossy(text).into_owned()
    }

    pub fn audio_ports(&mut self, input: bool) -> Vec<PortDesc> {
        let mut handle = self.instance.plugin_handle();
        let ext: PluginAudioPorts = handle.get_extension().expect("audio-ports extension");
        let mut buffer = AudioPortInfoBuffer::new();
        (0..ext.count(&mut handle, input))
            .map(|i| {
                let info = ext.get(&mut handle, i, input, &mut buffer).expect("port info");
                PortDesc { name: String::from_utf8_lossy(info.name).into_owned(), channels: info.channel_count }
            })
            .collect()
    }

    /// Tells the plugin the host renders offline (a bounce, as fast as it can) from the next
    /// activation on, through the `render` extension.
    pub fn render_offline(&mut self) {
        let handle = self.instance.plugin_handle();
        let ext: PluginRender = handle.get_extension().expect("render extension");
        ext.set(&handle, RenderMode::Offline).expect("offline render accepted");
    }

    pub fn activate(&mut self, sample_rate: f64, max_block: u32) {
        self.deactivate();
        let config = PluginAudioConfiguration { sample_rate, min_frames_count: 1, max_frames_count: max_block };
        let stopped = self.instance.activate(|_, _| (), config).expect("activate");
        self.processor = Some(stopped.start_processing().expect("start processing"));
        self.steady_time = 0;
    }

    pub fn deactivate(&mut self) {
        if let Some(processor) = self.processor.take() {
            self.instance.deactivate(processor.stop_processing());
        }
    }

    /// Process one block: `main` and `sidechain` are stereo inputs of equal length; returns the
    /// stereo main output. The take buses' outputs are kept in [`buses`](Self::buses).
    pub fn process(
        &mut self,
        main: [&[f32]; 2],
        sidechain: [&[f32]; 2],
        events: &[ParamValueEvent],
        transport: Option<&TransportEvent>,
    ) -> [Vec<f32>; 2] {
        let len = main[0].len();
        let mut inputs: Vec<Vec<f32>> = main.iter().chain(&sidechain).map(|c| c.to_vec()).collect();
        let mut outputs: Vec<Vec<f32>> = vec![vec![0.0f32; len]; 2 * self.output_ports];
        let (main_in, side_in) = inputs.split_at_mut(2);
        let mut in_ports = AudioPorts::with_capacity(4, 2);
        let mut out_ports = AudioPorts::with_capacity(outputs.len(), self.output_ports);
        let ins = in_ports.with_input_buffers([
            AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_input_only(as_channels(main_in)),
            },
            AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_input_only(as_channels(side_in)),
            },
        ]);
        let mut outs = out_ports.with_output_buffers(outputs.chunks_mut(2).map(|port| AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_output_only(port.iter_mut().map(|c| c.as_mut_slice())),
        }));
        let mut event_buffer = EventBuffer::with_capacity(events.len());
        for e in events {
            event_buffer.push(e);
        }
        let mut out_events = EventBuffer::new();
        let processor = self.processor.as_mut().expect("activate before process");
        processor
            .process(
                &ins,
                &mut outs,
                &InputEvents::from_buffer(&event_buffer),
                &mut OutputEvents::from_buffer(&mut out_events),
                Some(self.steady_time),
                transport,
            )
            .expect("process");
        self.steady_time += len as u64;
        let mut ports = outputs.chunks_exact(2).map(|p| [p[0].clone(), p[1].clone()]);
        let main_out = ports.next().expect("a main output");
        self.buses = ports.collect();
        main_out
    }

    /// The take buses' output of the last `process` call (stereo each, in port order).
    pub fn buses(&self) -> &[[Vec<f32>; 2]] {
        &self.buses
    }

    pub fn save_state(&mut self) -> Vec<u8> {
        let mut handle = self.instance.plugin_handle();
        let ext: PluginState = handle.get_extension().expect("state extension");
        let mut bytes = Vec::new();
        ext.save(&mut handle, &mut bytes).expect("save state");
        bytes
    }

    /// Load a state; `Err` when the plugin refused it.
    pub fn load_state(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        let mut handle = self.instance.plugin_handle();
        let ext: PluginState = handle.get_extension().expect("state extension");
        ext.load(&mut handle, &mut bytes).map_err(|e| format!("{e:?}"))
    }
}

fn as_channels(buffers: &mut [Vec<f32>]) -> Vec<InputChannel<'_, f32>> {
    buffers.iter_mut().map(|c| InputChannel::variable(c.as_mut_slice())).collect()
}

impl Drop for ClapPlugin {
    fn drop(&mut self) {
        self.deactivate();
    }
}

/// nice-plug's CLAP state is the JSON state prefixed by its length (u64, little endian).
pub fn state_json(bytes: &[u8]) -> serde_json::Value {
    assert!(bytes.len() >= 8, "state shorter than its length prefix");
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(len, bytes.len() - 8, "length prefix does not match the state");
    serde_json::from_slice(&bytes[8..]).expect("state is JSON")
}

/// The CLAP state bytes for a JSON state (the inverse of [`state_json`]).
pub fn state_bytes(json: &serde_json::Value) -> Vec<u8> {
    let body = serde_json::to_vec(json).unwrap();
    let mut bytes = (body.len() as u64).to_le_bytes().to_vec();
    bytes.extend(body);
    bytes
}

/// A parameter change at the start of a block.
pub fn set_param(id: ClapId, value: f64) -> ParamValueEvent {
    ParamValueEvent::new(0, id, Pckn::match_all(), value)
}

/// What a host's transport says at the start of a block.
#[derive(Debug, Clone, Copy)]
pub struct HostTransport {
    pub playing: bool,
    pub tempo: Option<f64>,
    pub meter: Option<(u16, u16)>,
    /// Song position in quarter notes.
    pub quarters: f64,
}

impl HostTransport {
    pub fn event(&self) -> TransportEvent {
        let mut flags = TransportFlags::HAS_BEATS_TIMELINE;
        if self.playing {
            flags |= TransportFlags::IS_PLAYING;
        }
        let tempo = self.tempo.unwrap_or(0.0);
        if self.tempo.is_some() {
            flags |= TransportFlags::HAS_TEMPO | TransportFlags::HAS_SECONDS_TIMELINE;
        }
        let (num, den) = self.meter.unwrap_or((4, 4));
        if self.meter.is_some() {
            flags |= TransportFlags::HAS_TIME_SIGNATURE;
        }
        let bar_len = num as f64 * 4.0 / den as f64;
        let bar = (self.quarters / bar_len + 1e-9).floor();
        let seconds = if tempo > 0.0 { self.quarters * 60.0 / tempo } else { 0.0 };
        TransportEvent {
            header: EventHeader::new_core(0, EventFlags::empty()),
            flags,
            song_pos_beats: BeatTime::from_float(self.quarters),
            song_pos_seconds: SecondsTime::from_float(seconds),
            tempo,
            tempo_inc: 0.0,
            loop_start_beats: BeatTime::from_int(0),
            loop_end_beats: BeatTime::from_int(0),
            loop_start_seconds: SecondsTime::from_int(0),
            loop_end_seconds: SecondsTime::from_int(0),
            bar_start: BeatTime::from_float(bar * bar_len),
            bar_number: bar as i32,
            time_signature_numerator: num,
            time_signature_denominator: den,
        }
    }
}

/// Render silence through the plugin with a moving transport: blocks of the given sizes (cycled)
/// until `total` samples, the transport starting at `start.quarters` and advancing at
/// `start.tempo` (or 120 BPM when the host sends none). `first_events` go with the first block.
/// Returns the left output channel.
pub fn render_silence(
    plugin: &mut ClapPlugin,
    sample_rate: f64,
    start: HostTransport,
    block_sizes: &[usize],
    total: usize,
    first_events: &[ParamValueEvent],
) -> Vec<f32> {
    let samples_per_quarter = sample_rate * 60.0 / start.tempo.unwrap_or(120.0);
    let silence = vec![0.0f32; *block_sizes.iter().max().unwrap()];
    let mut out = Vec::with_capacity(total);
    let mut sizes = block_sizes.iter().cycle();
    let mut events = first_events;
    while out.len() < total {
        let len = (*sizes.next().unwrap()).min(total - out.len());
        let transport = HostTransport {
            quarters: start.quarters + out.len() as f64 / samples_per_quarter,
            ..start
        };
        let s = &silence[..len];
        let [left, _] = plugin.process([s, s], [s, s], events, Some(&transport.event()));
        events = &[];
        out.extend_from_slice(&left);
    }
    out
}
