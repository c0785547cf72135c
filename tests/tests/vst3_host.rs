//! Backline in a VST3 host: the release `.vst3` is loaded with the `vst3` crate and driven the way
//! a DAW drives it (bus setup, activation, `process` with a moving `ProcessContext`, parameter
//! changes through `IParameterChanges`, project save/load through `IBStream`).
//!
//! The guide click makes the plugin's view of the host transport audible, so every timing check
//! reads the click onsets back out of the rendered audio (`backline_tests::clicks`).

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void};
use std::ptr::null_mut;
use std::sync::OnceLock;

use backline_engine::audio::grid::TimeSignature;
use backline_tests::{clicks, vst3_shared_object, Build};
use vst3::Steinberg::IBStream_::IStreamSeekMode_::{kIBSeekCur, kIBSeekEnd, kIBSeekSet};
use vst3::Steinberg::Vst::ParameterInfo_::ParameterFlags_::{kCanAutomate, kIsBypass};
use vst3::Steinberg::Vst::ProcessContext_::StatesAndFlags_::{
    kBarPositionValid, kPlaying, kProjectTimeMusicValid, kTempoValid, kTimeSigValid,
};
use vst3::Steinberg::Vst::{
    AudioBusBuffers, AudioBusBuffers__type0, BusDirections_, BusInfo, BusTypes_, IAudioProcessor,
    IAudioProcessorTrait, IComponent, IComponentTrait, IEditController, IEditControllerTrait,
    IParamValueQueue, IParamValueQueueTrait, IParameterChanges, IParameterChangesTrait,
    MediaTypes_, ParamID, ParamValue, ParameterInfo, ProcessContext, ProcessData, ProcessModes_,
    ProcessSetup, SpeakerArr, String128, SymbolicSampleSizes_,
};
use vst3::Steinberg::{
    int32, int64, kInvalidArgument, kResultFalse, kResultOk, tresult, IBStream, IBStreamTrait,
    IPluginBaseTrait, IPluginFactory, IPluginFactory2, IPluginFactory2Trait, IPluginFactoryTrait,
    PClassInfo, PClassInfo2, PFactoryInfo,
};
use vst3::{Class, ComPtr, ComWrapper, Interface};

const CLASS_ID: [u8; 16] = *b"BacklineACEStep1";
const SAMPLE_RATE: f64 = 48_000.0;
const BLOCK: usize = 512;
const GAIN: &str = "Output gain";
const CLICK: &str = "Guide click";
const BYPASS: &str = "Bypass";
const TITLES: [&str; 7] = [GAIN, "Take level", CLICK, "Capture source", "Mix", "Generate", BYPASS];
/// The main output and the four take buses.
const OUTPUT_BUSES: usize = 5;

type Stereo = [Vec<f32>; 2];

// Loading the module

/// The `.so`, opened and `ModuleEntry`'d once for the whole test process. It is never closed:
/// tests run on parallel threads, and unloading a Rust cdylib that other instances still use
/// (or that registered thread-local destructors) is not safe.
fn library() -> &'static libloading::Library {
    static LIBRARY: OnceLock<libloading::Library> = OnceLock::new();
    LIBRARY.get_or_init(|| unsafe {
        let library = libloading::Library::new(vst3_shared_object(Build::Release)).expect("dlopen");
        let entry = library
            .get::<unsafe extern "C" fn(*mut c_void) -> bool>(b"ModuleEntry")
            .expect("ModuleEntry is exported");
        assert!(entry(null_mut()), "ModuleEntry failed");
        library
    })
}

fn factory() -> ComPtr<IPluginFactory> {
    unsafe {
        let get = library()
            .get::<unsafe extern "system" fn() -> *mut c_void>(b"GetPluginFactory")
            .expect("GetPluginFactory is exported");
        ComPtr::from_raw(get() as *mut IPluginFactory).expect("a factory")
    }
}

fn utf16(s: &String128) -> String {
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    String::from_utf16_lossy(&s[..end])
}

fn cstr(s: &[c_char]) -> String {
    s.iter().take_while(|&&c| c != 0).map(|&c| c as u8 as char).collect()
}

// Host-side COM objects: parameter changes and a memory stream

/// One parameter's change for a block, at sample 0 (the host side of `IParamValueQueue`).
struct ParamQueue {
    id: ParamID,
    value: ParamValue,
}

impl Class for ParamQueue {
    type Interfaces = (IParamValueQueue,);
}

impl IParamValueQueueTrait for ParamQueue {
    unsafe fn getParameterId(&self) -> ParamID {
        self.id
    }
    unsafe fn getPointCount(&self) -> int32 {
        1
    }
    unsafe fn getPoint(&self, index: int32, offset: *mut int32, value: *mut ParamValue) -> tresult {
        if index != 0 || offset.is_null() || value.is_null() {
            return kInvalidArgument;
        }
        (*offset, *value) = (0, self.value);
        kResultOk
    }
    unsafe fn addPoint(&self, _offset: int32, _value: ParamValue, _index: *mut int32) -> tresult {
        kResultFalse // input changes are read-only for the plugin
    }
}

/// The parameter changes of one `process` call.
struct ParamChanges {
    queues: Vec<ComWrapper<ParamQueue>>,
}

impl Class for ParamChanges {
    type Interfaces = (IParameterChanges,);
}

impl IParameterChangesTrait for ParamChanges {
    unsafe fn getParameterCount(&self) -> int32 {
        self.queues.len() as int32
    }
    unsafe fn getParameterData(&self, index: int32) -> *mut IParamValueQueue {
        self.queues
            .get(index as usize)
            .map_or(null_mut(), |q| q.as_com_ref::<IParamValueQueue>().unwrap().as_ptr())
    }
    unsafe fn addParameterData(&self, _: *const ParamID, _: *mut int32) -> *mut IParamValueQueue {
        null_mut() // input changes are read-only for the plugin
    }
}

/// A host's in-memory project chunk (`IBStream`).
#[derive(Default)]
struct MemoryStream {
    data: RefCell<Vec<u8>>,
    pos: Cell<usize>,
}

impl Class for MemoryStream {
    type Interfaces = (IBStream,);
}

impl IBStreamTrait for MemoryStream {
    unsafe fn read(&self, buffer: *mut c_void, num_bytes: int32, read: *mut int32) -> tresult {
        let data = self.data.borrow();
        let pos = self.pos.get().min(data.len());
        let n = (num_bytes.max(0) as usize).min(data.len() - pos);
        if n > 0 {
            std::ptr::copy_nonoverlapping(data[pos..].as_ptr(), buffer as *mut u8, n);
        }
        self.pos.set(pos + n);
        if !read.is_null() {
            *read = n as int32;
        }
        kResultOk
    }
    unsafe fn write(&self, buffer: *mut c_void, num_bytes: int32, written: *mut int32) -> tresult {
        let n = num_bytes.max(0) as usize;
        let mut data = self.data.borrow_mut();
        let pos = self.pos.get();
        if data.len() < pos + n {
            data.resize(pos + n, 0);
        }
        data[pos..pos + n].copy_from_slice(std::slice::from_raw_parts(buffer as *const u8, n));
        self.pos.set(pos + n);
        if !written.is_null() {
            *written = n as int32;
        }
        kResultOk
    }
    unsafe fn seek(&self, pos: int64, mode: int32, result: *mut int64) -> tresult {
        let base = match mode as u32 {
            m if m == kIBSeekSet as u32 => 0,
            m if m == kIBSeekCur as u32 => self.pos.get() as int64,
            m if m == kIBSeekEnd as u32 => self.data.borrow().len() as int64,
            _ => return kInvalidArgument,
        };
        if base + pos < 0 {
            return kInvalidArgument;
        }
        self.pos.set((base + pos) as usize);
        if !result.is_null() {
            *result = base + pos;
        }
        kResultOk
    }
    unsafe fn tell(&self, pos: *mut int64) -> tresult {
        if pos.is_null() {
            return kInvalidArgument;
        }
        *pos = self.pos.get() as int64;
        kResultOk
    }
}

// The plugin instance, as a host holds it

struct Backline {
    component: ComPtr<IComponent>,
    processor: ComPtr<IAudioProcessor>,
    /// Backline is a single-component plugin: the component is its own edit controller.
    controller: ComPtr<IEditController>,
    params: Vec<ParameterInfo>,
    active: bool,
    /// `kRealtime`, or `kOffline` for a render that runs faster than real time.
    process_mode: i32,
}

impl Backline {
    /// `createInstance` + `initialize`, then the parameter list, as a host scans it.
    fn new() -> Self {
        unsafe {
            let mut obj = null_mut();
            let result = factory().createInstance(
                CLASS_ID.as_ptr() as *const c_char,
                IComponent::IID.as_ptr() as *const c_char,
                &mut obj,
            );
            assert_eq!(result, kResultOk, "createInstance");
            let component = ComPtr::from_raw(obj as *mut IComponent).expect("an IComponent");
            assert_eq!(component.initialize(null_mut()), kResultOk, "initialize");
            let processor = component.cast::<IAudioProcessor>().expect("IAudioProcessor");
            let controller = component.cast::<IEditController>().expect("IEditController");
            let params = (0..controller.getParameterCount())
                .map(|i| {
                    let mut info: ParameterInfo = std::mem::zeroed();
                    assert_eq!(controller.getParameterInfo(i, &mut info), kResultOk);
                    info
                })
                .collect();
            Self { component, processor, controller, params, active: false, process_mode: ProcessModes_::kRealtime as i32 }
        }
    }

    fn param(&self, title: &str) -> ParamID {
        self.params
            .iter()
            .find(|p| utf16(&p.title) == title)
            .unwrap_or_else(|| panic!("{title}"))
            .id
    }

    fn normalized(&self, title: &str, plain: f64) -> ParamValue {
        unsafe { self.controller.plainParamToNormalized(self.param(title), plain) }
    }

    fn value(&self, title: &str) -> ParamValue {
        unsafe { self.controller.getParamNormalized(self.param(title)) }
    }

    fn values(&self) -> Vec<ParamValue> {
        TITLES.iter().map(|t| self.value(t)).collect()
    }

    /// Stereo main in + stereo sidechain in -> stereo out, then setup, activate, start processing.
    fn activate(&mut self, sample_rate: f64, max_block: usize) {
        unsafe {
            let mut ins = [SpeakerArr::kStereo; 2];
            let mut outs = [SpeakerArr::kStereo; OUTPUT_BUSES];
            assert_eq!(
                self.processor.setBusArrangements(ins.as_mut_ptr(), 2, outs.as_mut_ptr(), OUTPUT_BUSES as i32),
                kResultOk
            );
            let audio = MediaTypes_::kAudio as i32;
            let inputs = [(BusDirections_::kInput, 0), (BusDirections_::kInput, 1)];
            let outputs = (0..OUTPUT_BUSES as i32).map(|i| (BusDirections_::kOutput, i));
            for (dir, index) in inputs.into_iter().chain(outputs) {
                assert_eq!(self.component.activateBus(audio, dir as i32, index, 1), kResultOk);
            }
            self.setup(sample_rate, max_block);
        }
    }

    fn setup(&mut self, sample_rate: f64, max_block: usize) {
        unsafe {
            let mut setup = ProcessSetup {
                processMode: self.process_mode,
                symbolicSampleSize: SymbolicSampleSizes_::kSample32 as i32,
                maxSamplesPerBlock: max_block as i32,
                sampleRate: sample_rate,
            };
            // Twice, as hosts do when they set up again before each activation: nice-plug
            // 0.4.2's VST3 wrapper gives `activate` the process mode of the previous
            // `setupProcessing` call (it stores the buffer config before the new mode), so a
            // single call would activate an offline render as real-time.
            for _ in 0..2 {
                assert_eq!(self.processor.setupProcessing(&mut setup), kResultOk, "setupProcessing");
            }
            assert_eq!(self.component.setActive(1), kResultOk, "setActive(true)");
            assert_eq!(self.processor.setProcessing(1), kResultOk, "setProcessing(true)");
        }
        self.active = true;
    }

    /// The host will render offline (a bounce, as fast as it can); set before `activate`, as a
    /// host sets up processing for an export.
    fn render_offline(&mut self) {
        assert!(!self.active, "the process mode is part of the set-up");
        self.process_mode = ProcessModes_::kOffline as i32;
    }

    fn deactivate(&mut self) {
        unsafe {
            assert_eq!(self.processor.setProcessing(0), kResultOk);
            assert_eq!(self.component.setActive(0), kResultOk);
        }
        self.active = false;
    }

    /// One `process` call: `main` and `sidechain` in, stereo out (separate buffers, as most
    /// hosts do), `changes` as `(param, normalized)` at sample 0.
    fn process(
        &self,
        main: &Stereo,
        sidechain: &Stereo,
        context: Option<&ProcessContext>,
        changes: &[(ParamID, f64)],
    ) -> Stereo {
        self.process_buses(main, sidechain, context, changes).swap_remove(0)
    }

    /// Like [`process`](Self::process), returning every output bus: the main output, then the
    /// take buses.
    fn process_buses(
        &self,
        main: &Stereo,
        sidechain: &Stereo,
        context: Option<&ProcessContext>,
        changes: &[(ParamID, f64)],
    ) -> Vec<Stereo> {
        let n = main[0].len();
        let (mut main, mut sidechain) = (main.clone(), sidechain.clone());
        let mut out: Vec<Stereo> = (0..OUTPUT_BUSES).map(|_| [vec![0.0; n], vec![0.0; n]]).collect();
        let mut ptrs = [main[0].as_mut_ptr(), main[1].as_mut_ptr()];
        let mut side_ptrs = [sidechain[0].as_mut_ptr(), sidechain[1].as_mut_ptr()];
        let mut out_ptrs: Vec<[*mut f32; 2]> = out.iter_mut().map(|b| [b[0].as_mut_ptr(), b[1].as_mut_ptr()]).collect();
        let bus = |ptrs: &mut [*mut f32; 2]| AudioBusBuffers {
            numChannels: 2,
            silenceFlags: 0,
            __field0: AudioBusBuffers__type0 { channelBuffers32: ptrs.as_mut_ptr() },
        };
        let mut inputs = [bus(&mut ptrs), bus(&mut side_ptrs)];
        let mut outputs: Vec<AudioBusBuffers> = out_ptrs.iter_mut().map(bus).collect();
        let changes = ComWrapper::new(ParamChanges {
            queues: changes
                .iter()
                .map(|&(id, value)| ComWrapper::new(ParamQueue { id, value }))
                .collect(),
        });
        let mut context = context.copied();
        let mut data = ProcessData {
            processMode: self.process_mode,
            symbolicSampleSize: SymbolicSampleSizes_::kSample32 as i32,
            numSamples: n as i32,
            numInputs: 2,
            numOutputs: OUTPUT_BUSES as i32,
            inputs: inputs.as_mut_ptr(),
            outputs: outputs.as_mut_ptr(),
            inputParameterChanges: changes.as_com_ref::<IParameterChanges>().unwrap().as_ptr(),
            outputParameterChanges: null_mut(),
            inputEvents: null_mut(),
            outputEvents: null_mut(),
            processContext: context.as_mut().map_or(null_mut(), |c| c as *mut ProcessContext),
        };
        assert_eq!(unsafe { self.processor.process(&mut data) }, kResultOk, "process");
        out
    }

    /// Render `main` in `BLOCK`-sample blocks with a silent sidechain (see `render_with`).
    fn render(&self, song: &mut Song, main: &Stereo, changes: &[(ParamID, f64)]) -> Stereo {
        self.render_with(song, main, None, &[BLOCK], changes)
    }

    /// Render `main` (and `sidechain`, else silence) block by block, block sizes cycling through
    /// `blocks`, the song advancing after each block; `changes` go with the first block.
    fn render_with(
        &self,
        song: &mut Song,
        main: &Stereo,
        sidechain: Option<&Stereo>,
        blocks: &[usize],
        changes: &[(ParamID, f64)],
    ) -> Stereo {
        let len = main[0].len();
        let silent = silence(len);
        let sidechain = sidechain.unwrap_or(&silent);
        let mut out: Stereo = [Vec::with_capacity(len), Vec::with_capacity(len)];
        let (mut pos, mut sizes, mut changes) = (0, blocks.iter().cycle(), changes);
        while pos < len {
            let n = (*sizes.next().unwrap()).min(len - pos);
            let slice = |s: &Stereo| [s[0][pos..pos + n].to_vec(), s[1][pos..pos + n].to_vec()];
            let got = self.process(&slice(main), &slice(sidechain), Some(&song.context()), changes);
            changes = &[];
            out[0].extend_from_slice(&got[0]);
            out[1].extend_from_slice(&got[1]);
            song.advance(n);
            pos += n;
        }
        out
    }

    fn get_state(&self) -> Vec<u8> {
        let stream = ComWrapper::new(MemoryStream::default());
        let result =
            unsafe { self.component.getState(stream.as_com_ref::<IBStream>().unwrap().as_ptr()) };
        assert_eq!(result, kResultOk, "getState");
        stream.data.take()
    }

    fn get_state_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.get_state()).expect("the state is JSON")
    }

    /// `IComponent::setState`, then `IEditController::setComponentState` as a host does for a
    /// single-component plugin. Returns what `IComponent::setState` said.
    fn set_state(&self, bytes: &[u8]) -> tresult {
        let stream =
            ComWrapper::new(MemoryStream { data: RefCell::new(bytes.to_vec()), pos: Cell::new(0) });
        let ptr = stream.as_com_ref::<IBStream>().unwrap().as_ptr();
        unsafe {
            let result = self.component.setState(ptr);
            stream.pos.set(0);
            assert_eq!(self.controller.setComponentState(ptr), kResultOk, "setComponentState");
            result
        }
    }
}

impl Drop for Backline {
    fn drop(&mut self) {
        if self.active && !std::thread::panicking() {
            self.deactivate();
        }
        unsafe { self.component.terminate() };
    }
}

// The host transport and test signals

/// The host's song position, advanced block by block like a DAW's playhead.
#[derive(Clone, Copy)]
struct Song {
    sample_rate: f64,
    bpm: f64,
    /// Whether the context flags the tempo as valid (`kTempoValid`).
    tempo_valid: bool,
    meter: TimeSignature,
    playing: bool,
    start_quarters: f64,
    /// A bar line of the song: bar lines fall at this plus whole bars (0 unless the meter
    /// changed earlier in the song, as in a 4/4 intro before a 3/4 verse).
    bar_anchor_quarters: f64,
    elapsed: i64,
}

impl Song {
    fn playing(bpm: f64, meter: TimeSignature, sample_rate: f64, start_quarters: f64) -> Self {
        Self {
            sample_rate,
            bpm,
            meter,
            start_quarters,
            bar_anchor_quarters: 0.0,
            tempo_valid: true,
            playing: true,
            elapsed: 0,
        }
    }

    fn samples_per_quarter(&self) -> f64 {
        self.sample_rate * 60.0 / self.bpm
    }

    fn context(&self) -> ProcessContext {
        let spq = self.samples_per_quarter();
        let pos = self.start_quarters + self.elapsed as f64 / spq;
        let bar_len = self.meter.quarters_per_bar();
        let mut c: ProcessContext = unsafe { std::mem::zeroed() };
        c.state = (kProjectTimeMusicValid | kBarPositionValid | kTimeSigValid) as u32;
        if self.tempo_valid {
            c.state |= kTempoValid as u32;
            c.tempo = self.bpm;
        } else {
            c.tempo = 90.0; // a stale value the plugin must ignore without kTempoValid
        }
        if self.playing {
            c.state |= kPlaying as u32;
        }
        c.sampleRate = self.sample_rate;
        c.projectTimeSamples = (self.start_quarters * spq).round() as i64 + self.elapsed;
        c.continousTimeSamples = self.elapsed;
        c.projectTimeMusic = pos;
        let anchor = self.bar_anchor_quarters;
        c.barPositionMusic = anchor + ((pos - anchor) / bar_len + 1e-9).floor() * bar_len;
        c.timeSigNumerator = self.meter.numerator as i32;
        c.timeSigDenominator = self.meter.denominator as i32;
        c
    }

    fn advance(&mut self, samples: usize) {
        if self.playing {
            self.elapsed += samples as i64;
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

fn meter(n: u32, d: u32) -> TimeSignature {
    TimeSignature::new(n, d).unwrap()
}

fn silence(len: usize) -> Stereo {
    [vec![0.0; len], vec![0.0; len]]
}

/// Music-like test audio, different on the two channels.
fn test_signal(len: usize) -> Stereo {
    let tone = |f: f32, phase: f32| -> Vec<f32> {
        (0..len)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                0.3 * (std::f32::consts::TAU * f * t + phase).sin()
                    + 0.1 * (std::f32::consts::TAU * 3.1 * f * t).sin()
            })
            .collect()
    };
    [tone(220.0, 0.0), tone(330.0, 1.0)]
}

/// Assert that `out` is `input` at linear gain `gain` (within 1e-4) from sample `from` on.
fn assert_gain(out: &Stereo, input: &Stereo, gain: f32, from: usize, context: &str) {
    for (ch, (o, i)) in out.iter().zip(input).enumerate() {
        let bad = (from..i.len()).find(|&k| (o[k] - gain * i[k]).abs() > 1e-4);
        assert!(bad.is_none(), "{context}: channel {ch}, sample {bad:?}: not at gain {gain}");
    }
}

/// Assert that `out`, rendered from silence over `song`, clicks on the song's beats, accented on
/// downbeats, with the clicks' exact peaks at output gain `gain` (linear).
fn assert_clicks(out: &Stereo, gain: f32, song: &Song, tolerance: usize, context: &str) {
    assert_eq!(out[0], out[1], "{context}: the click is the same on both channels");
    let onsets = clicks::find_onsets(&out[0], gain);
    let expected = clicks::expected_beats(
        song.bpm,
        song.meter,
        song.sample_rate,
        // Beats fall at whole beats from the song's bar anchor.
        song.start_quarters - song.bar_anchor_quarters,
        out[0].len(),
    );
    assert!(expected.len() >= 6, "{context}: the render covers several beats");
    clicks::assert_beats(&onsets, &expected, tolerance, context);
    for o in &onsets {
        let peak = if o.accent { clicks::ACCENT_AMPLITUDE } else { clicks::BEAT_AMPLITUDE } * gain;
        assert!((o.amplitude - peak).abs() <= 1e-4 * gain, "{context}: onset {o:?}, peak {peak}");
    }
}

// Tests

/// A DAW's plugin scan: one audio effect named "Backline" with the class id projects store, a
/// stereo main in/out plus a stereo sidechain input, and the five automatable parameters with
/// the titles users see (Bypass flagged so hosts map their bypass button to it).
#[test]
fn describes_itself() {
    let factory = factory();
    unsafe {
        let mut info: PFactoryInfo = std::mem::zeroed();
        assert_eq!(factory.getFactoryInfo(&mut info), kResultOk);
        assert_eq!(cstr(&info.vendor), "Backline");
        assert_eq!(factory.countClasses(), 1);
        let mut class: PClassInfo = std::mem::zeroed();
        assert_eq!(factory.getClassInfo(0, &mut class), kResultOk);
        assert_eq!(class.cid.map(|c| c as u8), CLASS_ID);
        assert_eq!(cstr(&class.category), "Audio Module Class");
        assert_eq!(cstr(&class.name), "Backline");
        let factory2 = factory.cast::<IPluginFactory2>().expect("IPluginFactory2");
        let mut class2: PClassInfo2 = std::mem::zeroed();
        assert_eq!(factory2.getClassInfo2(0, &mut class2), kResultOk);
        assert_eq!(cstr(&class2.subCategories), "Fx|Generator|Tools");
    }

    let plugin = Backline::new();
    unsafe {
        let audio = MediaTypes_::kAudio as i32;
        let (input, output) = (BusDirections_::kInput as i32, BusDirections_::kOutput as i32);
        assert_eq!(plugin.component.getBusCount(audio, input), 2);
        assert_eq!(plugin.component.getBusCount(audio, output), OUTPUT_BUSES as i32);
        assert_eq!(plugin.component.getBusCount(MediaTypes_::kEvent as i32, input), 0);
        let bus = |dir, index| {
            let mut info: BusInfo = std::mem::zeroed();
            assert_eq!(plugin.component.getBusInfo(audio, dir, index, &mut info), kResultOk);
            (utf16(&info.name), info.busType as u32, info.channelCount)
        };
        let (main, aux) = (BusTypes_::kMain as u32, BusTypes_::kAux as u32);
        assert_eq!(bus(input, 0), ("Input".into(), main, 2));
        assert_eq!(bus(input, 1), ("Sidechain".into(), aux, 2));
        assert_eq!(bus(output, 0), ("Output".into(), main, 2));
        for k in 1..OUTPUT_BUSES as i32 {
            assert_eq!(bus(output, k), (format!("Take {k}"), aux, 2));
        }
        // A host offering a mono main input is told no.
        let mut ins = [SpeakerArr::kMono, SpeakerArr::kStereo];
        let mut outs = [SpeakerArr::kStereo; OUTPUT_BUSES];
        assert_ne!(
            plugin.processor.setBusArrangements(ins.as_mut_ptr(), 2, outs.as_mut_ptr(), OUTPUT_BUSES as i32),
            kResultOk
        );
    }

    let titles: Vec<String> = plugin.params.iter().map(|p| utf16(&p.title)).collect();
    assert_eq!(titles, TITLES);
    for p in &plugin.params {
        let title = utf16(&p.title);
        assert_ne!(p.flags & kCanAutomate, 0, "{title} is automatable");
        assert_eq!(p.flags & kIsBypass != 0, title == BYPASS, "{title}: kIsBypass");
    }
    let steps: Vec<i32> = plugin.params.iter().map(|p| p.stepCount).collect();
    assert_eq!(steps, [0, 0, 1, 1, 2, 1, 1], "continuous gains, switch-like click/source/generate/bypass, three mix modes");
    assert_eq!(plugin.value(CLICK), 0.0, "the click starts off");
    assert_eq!(plugin.value(BYPASS), 0.0);
    assert!(close(plugin.value(GAIN), plugin.normalized(GAIN, 1.0)), "gain starts at 0 dB");
}

/// The click a producer hears lands on every beat of the host's tempo and meter (eighths in 6/8
/// and 7/8), accented on each downbeat, from whatever song position playback starts at.
///
/// The click is switched on by a parameter change at sample 0 of the first block, so (per VST3)
/// it is on for that whole block: the comparison covers the render from its first sample.
#[test]
fn clicks_follow_host_tempo_and_meter() {
    for (bpm, (n, d)) in [(120.0, (4, 4)), (90.0, (3, 4)), (90.0, (6, 8)), (140.0, (7, 8))] {
        let m = meter(n, d);
        let mut plugin = Backline::new();
        plugin.activate(SAMPLE_RATE, BLOCK);
        // 1.2 bars in: between two beats in every meter here, so the first click is not at 0.
        let mut song = Song::playing(bpm, m, SAMPLE_RATE, 1.2 * m.quarters_per_bar());
        let len = (3.0 * m.quarters_per_bar() * song.samples_per_quarter()) as usize;
        let out = plugin.render(&mut song, &silence(len), &[(plugin.param(CLICK), 1.0)]);
        assert_clicks(&out, 1.0, &song, 0, &format!("{bpm} BPM {m}"));
    }
}

/// After a meter change the host's bar lines are not at multiples of the current bar length
/// from the song start: one bar of 4/4, then 3/4, puts them at 4, 7, 10... quarters. The
/// downbeat accents must follow the host's bar lines (VST3 reports only the bar start, no bar
/// number).
#[test]
fn downbeats_follow_the_hosts_bar_lines_after_a_meter_change() {
    let mut plugin = Backline::new();
    plugin.activate(SAMPLE_RATE, BLOCK);
    let mut song = Song::playing(120.0, meter(3, 4), SAMPLE_RATE, 4.5);
    song.bar_anchor_quarters = 4.0;
    let len = (7.0 * song.samples_per_quarter()) as usize;
    let out = plugin.render(&mut song, &silence(len), &[(plugin.param(CLICK), 1.0)]);
    assert_clicks(&out, 1.0, &song, 0, "3/4 after a bar of 4/4");
    let accents: Vec<usize> =
        clicks::find_onsets(&out[0], 1.0).iter().filter(|o| o.accent).map(|o| o.sample).collect();
    // Downbeats at quarters 7 and 10: 2.5 and 5.5 quarters into the render.
    assert_eq!(accents, [60_000, 132_000]);
}

/// With the transport stopped, audio passes through bit-exactly at 0 dB and the click stays
/// silent even when it is switched on; the sidechain never leaks into the output.
#[test]
fn stopped_transport_passes_audio_and_does_not_click() {
    let mut plugin = Backline::new();
    plugin.activate(SAMPLE_RATE, BLOCK);
    let mut song = Song { playing: false, ..Song::playing(120.0, meter(4, 4), SAMPLE_RATE, 8.0) };
    let input = test_signal(BLOCK * 100);
    let sidechain = [input[1].clone(), input[0].clone()];
    let click_on = [(plugin.param(CLICK), 1.0)];
    let out = plugin.render_with(&mut song, &input, Some(&sidechain), &[BLOCK], &click_on);
    assert_eq!(plugin.value(CLICK), 1.0, "the click is on");
    let residue: Vec<f32> = out[0].iter().zip(&input[0]).map(|(o, i)| o - i).collect();
    assert_eq!(clicks::find_onsets(&residue, 1.0), [], "no click while stopped");
    assert!(out == input, "the main input passes through unchanged");
}

/// A host that sends no tempo (no `kTempoValid`, a stale tempo field) but a playing position:
/// Backline falls back to 120 BPM, a click every 24000 samples at 48 kHz.
#[test]
fn no_tempo_falls_back_to_120() {
    let mut plugin = Backline::new();
    plugin.activate(SAMPLE_RATE, BLOCK);
    let mut song =
        Song { tempo_valid: false, ..Song::playing(120.0, meter(4, 4), SAMPLE_RATE, 2.3) };
    let out = plugin.render(&mut song, &silence(6 * 24_000), &[(plugin.param(CLICK), 1.0)]);
    assert_clicks(&out, 1.0, &song, 0, "no tempo");
    let onsets = clicks::find_onsets(&out[0], 1.0);
    assert!(onsets.windows(2).all(|w| w[1].sample - w[0].sample == 24_000), "{onsets:?}");
}

/// Automating Output gain to -6.02 dB halves the output after a short de-zipper ramp (no jump);
/// Bypass then passes the input bit-exactly even with the click on and the gain down, and
/// switching Bypass off again restores the gain.
#[test]
fn gain_and_bypass_parameter_changes() {
    let mut plugin = Backline::new();
    plugin.activate(SAMPLE_RATE, BLOCK);
    let (gain, click, bypass) = (plugin.param(GAIN), plugin.param(CLICK), plugin.param(BYPASS));
    let half = plugin.normalized(GAIN, 0.5);
    unsafe {
        assert!((plugin.controller.normalizedParamToPlain(gain, half) - 0.5).abs() < 1e-6);
        let mut text: String128 = [0; 128];
        assert_eq!(plugin.controller.getParamStringByValue(gain, half, &mut text), kResultOk);
        assert_eq!(utf16(&text), "-6.0", "what the host shows for the automated value");
    }

    let mut song = Song::playing(120.0, meter(4, 4), SAMPLE_RATE, 0.0);
    let len = 48_000;
    let dc = [vec![0.5f32; len], test_signal(len)[1].clone()];
    let out = plugin.render(&mut song, &dc, &[(gain, half)]);
    assert!(close(plugin.value(GAIN), half));
    let ramp: Vec<f32> = out[0].iter().map(|o| o / 0.5).collect();
    assert!(ramp[0] > 0.95, "smoothed, not a jump: the first sample's gain is {}", ramp[0]);
    assert!(ramp.windows(2).all(|w| w[1] <= w[0] + 1e-6), "the ramp only goes down");
    // The logarithmic smoother takes 20 ms (960 samples); compare from 2048 samples on.
    assert_gain(&out, &dc, 0.5, 2048, "after the ramp");

    let input = test_signal(len);
    let out = plugin.render(&mut song, &input, &[(bypass, 1.0), (click, 1.0)]);
    assert!(out == input, "bypassed: the input passes bit-exactly, no click, no gain");

    let out = plugin.render(&mut song, &input, &[(bypass, 0.0), (click, 0.0)]);
    assert_gain(&out, &input, 0.5, 0, "un-bypassed");
}

/// Saving a project and opening it again (a new instance, `setState` before activation) brings
/// back every parameter and the drafted request, and the restored click sounds on the beats at
/// the restored gain.
#[test]
fn state_round_trips_into_a_new_instance() {
    let mut saved_from = Backline::new();
    saved_from.activate(SAMPLE_RATE, BLOCK);
    // A project whose drafted request the user had typed in the editor.
    let mut project = saved_from.get_state_json();
    let session = r#"{"schema":1,"caption":"dusty boom-bap drums","lyrics":"[verse]\nla la","start_bar":8,"length_bars":8}"#;
    project["fields"]["session"] = session.into();
    assert_eq!(saved_from.set_state(project.to_string().as_bytes()), kResultOk);
    // The user turns the click on, the gain down and the capture to the sidechain.
    let half = saved_from.normalized(GAIN, 0.5);
    let changes = [
        (saved_from.param(GAIN), half),
        (saved_from.param(CLICK), 1.0),
        (saved_from.param("Capture source"), 1.0),
    ];
    saved_from.process(&silence(BLOCK), &silence(BLOCK), None, &changes);
    let saved = saved_from.get_state();
    let json: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(json["params"]["click"]["bool"], true, "{json}");
    assert!((json["params"]["gain"]["f32"].as_f64().unwrap() - 0.5).abs() < 1e-5, "{json}");
    let saved_session: serde_json::Value =
        serde_json::from_str(json["fields"]["session"].as_str().unwrap()).unwrap();
    assert_eq!(saved_session["caption"], "dusty boom-bap drums");

    let mut reopened = Backline::new();
    assert_eq!(reopened.set_state(&saved), kResultOk, "setState");
    for (title, (a, b)) in TITLES.iter().zip(reopened.values().iter().zip(saved_from.values())) {
        assert!(close(*a, b), "{title}: saved {b}, restored {a}");
    }
    assert_eq!(reopened.get_state_json(), json, "the reopened instance saves the same state");

    reopened.activate(SAMPLE_RATE, BLOCK);
    let mut song = Song::playing(90.0, meter(3, 4), SAMPLE_RATE, 0.5);
    let out = reopened.render(&mut song, &silence(3 * 3 * 32_000), &[]);
    assert_clicks(&out, 0.5, &song, 0, "restored click at -6 dB");
}

/// A damaged project never takes the plugin down: garbage, empty and truncated chunks are
/// refused and leave the settings alone; a chunk whose drafted request is garbage still loads
/// its parameters and resets the request to defaults. Audio keeps flowing after each.
#[test]
fn corrupt_state_is_rejected_and_the_plugin_keeps_running() {
    let mut plugin = Backline::new();
    plugin.activate(SAMPLE_RATE, BLOCK);
    let defaults = plugin.get_state_json();
    let valid = plugin.get_state();
    let random: Vec<u8> =
        (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut garbage_session = defaults.clone();
    garbage_session["params"]["take_level"] = serde_json::json!({ "f32": 0.25 });
    garbage_session["params"]["capture"] = serde_json::json!({ "string": "sidechain" });
    garbage_session["fields"]["session"] = "\u{0}\u{1}garbage{{".into();
    let garbage_session = garbage_session.to_string().into_bytes();

    let input = test_signal(4 * BLOCK);
    let mut song = Song::playing(120.0, meter(4, 4), SAMPLE_RATE, 0.0);
    let before = plugin.values();
    let cases: [(&str, &[u8], bool); 4] = [
        ("random bytes", &random, false),
        ("empty stream", &[], false),
        ("truncated JSON", &valid[..valid.len() / 2], false),
        ("garbage session", &garbage_session, true),
    ];
    for (name, bytes, accepted) in cases {
        let result = plugin.set_state(bytes);
        eprintln!("setState({name}, {} bytes) returned {result}", bytes.len());
        assert_eq!(result == kResultOk, accepted, "{name}: setState returned {result}");
        if !accepted {
            assert_eq!(plugin.values(), before, "{name}: a refused state changes no parameter");
        }
        let out = plugin.render(&mut song, &input, &[]);
        assert!(out == input, "{name}: the plugin still passes audio through");
    }
    assert!(close(plugin.value("Take level"), plugin.normalized("Take level", 0.25)));
    assert_eq!(plugin.value("Capture source"), 1.0);
    let state = plugin.get_state_json();
    let session = |s: &serde_json::Value| -> serde_json::Value {
        serde_json::from_str(s["fields"]["session"].as_str().expect("a session string")).unwrap()
    };
    assert_eq!(session(&state), session(&defaults), "the garbage request was reset to defaults");
}

/// Changing the project's sample rate (deactivate, new setup, activate) and hosts that vary the
/// block size from 1 to 8192 samples: the clicks stay on the beats at the new rate.
#[test]
fn sample_rate_and_block_size_changes() {
    let mut plugin = Backline::new();
    plugin.activate(SAMPLE_RATE, BLOCK);
    let click = plugin.param(CLICK);
    plugin.process(&silence(BLOCK), &silence(BLOCK), None, &[(click, 1.0)]);
    let m = meter(7, 8);
    for rate in [44_100.0, 96_000.0] {
        plugin.deactivate();
        plugin.setup(rate, 8192);
        let mut song = Song::playing(140.0, m, rate, 3.25);
        let len = (3.0 * m.quarters_per_bar() * song.samples_per_quarter()) as usize;
        let out =
            plugin.render_with(&mut song, &silence(len), None, &[1, 7, 64, 480, 4096, 8192], &[]);
        assert_clicks(&out, 1.0, &song, 1, &format!("{rate} Hz, varying blocks"));
    }
}

/// The producer's workflow through VST3 on the tiny checkpoint set: capture a click track from
/// the sidechain, press Generate (a parameter change from the host), keep processing while the
/// job runs, then replay: the take starts on bar 1's sample, lasts exactly four bars, and plays
/// on the main output and on bus "Take 1". The test runs far faster than real time, so it says so
/// as a host does for a bounce (offline): the capture then waits for its thread, never drops.
#[test]
fn capture_generate_and_replay() {
    use backline_tests::workflow::{click_track, edit_session, read_take, scratch, session, use_tiny_checkpoints};
    use_tiny_checkpoints("vst3-host");
    let (bpm, four_four) = (120.0, meter(4, 4));
    let bar = 96_000usize;
    let mut plugin = Backline::new();
    plugin.render_offline();
    plugin.activate(SAMPLE_RATE, BLOCK);
    let takes_dir = scratch("vst3-workflow");
    let mut state = plugin.get_state_json();
    edit_session(&mut state, |s| {
        s["task"] = "lego".into();
        s["track_name"] = "guitar".into();
        s["length_bars"] = 4.into();
        s["steps"] = 2.into();
        s["seed"] = 9.into();
        s["take_folder"] = takes_dir.display().to_string().into();
    });
    assert_eq!(plugin.set_state(&serde_json::to_vec(&state).unwrap()), kResultOk);

    let len = bar * 5 + bar / 5;
    let clicks = click_track(bpm, four_four, SAMPLE_RATE, 0.0, len);
    let mut song = Song::playing(bpm, four_four, SAMPLE_RATE, 0.0);
    let capture = plugin.param("Capture source");
    plugin.render_with(&mut song, &silence(len), Some(&[clicks.clone(), clicks]), &[BLOCK], &[(capture, 1.0)]);

    let generate = plugin.param("Generate");
    let mut stopped = Song { playing: false, ..Song::playing(bpm, four_four, SAMPLE_RATE, 0.0) };
    plugin.render(&mut stopped, &silence(BLOCK), &[(generate, 1.0)]);
    plugin.render(&mut stopped, &silence(BLOCK), &[(generate, 0.0)]);
    let started = std::time::Instant::now();
    let take = loop {
        plugin.render(&mut stopped, &silence(BLOCK * 10), &[]);
        std::thread::sleep(std::time::Duration::from_millis(50));
        if let Some(take) = session(&plugin.get_state_json())["takes"].get(0).cloned() {
            break take;
        }
        assert!(started.elapsed().as_secs() < 300, "no take after 300 s (the plugin logs why a job failed, above)");
    };
    assert_eq!(take["recipe"]["request"]["track_name"], "guitar");
    let audio = read_take(take["file"].as_str().unwrap());
    assert_eq!(audio[0].len(), 4 * bar, "exactly four bars");

    let mut replay = Song::playing(bpm, four_four, SAMPLE_RATE, -4.0);
    let mut buses = Vec::new();
    let mut main: Stereo = [Vec::new(), Vec::new()];
    for _ in 0..(6 * bar / BLOCK) {
        let got = plugin.process_buses(&silence(BLOCK), &silence(BLOCK), Some(&replay.context()), &[]);
        replay.advance(BLOCK);
        for ch in 0..2 {
            main[ch].extend_from_slice(&got[0][ch]);
        }
        buses.extend_from_slice(&got[1][0]);
    }
    for ch in 0..2 {
        assert!(main[ch][..bar].iter().all(|&x| x == 0.0), "silent before bar 1");
        assert_eq!(&main[ch][bar..5 * bar], &audio[ch][..], "the take, from bar 1's sample");
        assert!(main[ch][5 * bar..].iter().all(|&x| x == 0.0), "nothing after four bars");
    }
    assert_eq!(buses, main[0], "bus Take 1 carries the take");
}
