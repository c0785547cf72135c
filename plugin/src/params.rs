//! Host-visible parameters. IDs are short and never renamed: hosts store automation by them.

use nice_plug::prelude::*;

use crate::state::SessionField;

/// Range of the gain-style parameters, in dB.
pub const GAIN_MIN_DB: f32 = -60.0;
pub const GAIN_MAX_DB: f32 = 12.0;

/// Which input the capture records (captured audio is the source of repaint, cover, lego, ...).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureSource {
    #[id = "main"]
    #[name = "Main input"]
    Main,
    #[id = "sidechain"]
    #[name = "Sidechain"]
    Sidechain,
}

/// How the takes meet the input on the main output.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixMode {
    /// Input plus takes: a layer over what the track plays.
    #[id = "add"]
    #[name = "Add to input"]
    Add,
    /// Takes in place of the input wherever a take plays; the input elsewhere.
    #[id = "replace"]
    #[name = "Replace input"]
    Replace,
    /// Takes only; the input is muted.
    #[id = "take_only"]
    #[name = "Takes only"]
    TakesOnly,
}

#[derive(Params)]
pub struct BacklineParams {
    /// Output gain applied to everything the plugin outputs.
    #[id = "gain"]
    pub gain: FloatParam,
    /// Level of generated takes when they play back on the timeline.
    #[id = "take_level"]
    pub take_level: FloatParam,
    /// A guide click on every beat of the host's meter, accented on each bar's downbeat.
    #[id = "click"]
    pub click: BoolParam,
    #[id = "capture"]
    pub capture_source: EnumParam<CaptureSource>,
    #[id = "mix"]
    pub mix: EnumParam<MixMode>,
    /// Submits the drafted request when it turns on (a button a controller or automation can
    /// press too). Turning it off does nothing.
    #[id = "generate"]
    pub generate: BoolParam,
    /// Bypass: the main input passes through untouched.
    #[id = "bypass"]
    pub bypass: BoolParam,
    /// The request being drafted and the takes (see `state.rs`).
    #[persist = "session"]
    pub session: SessionField,
}

fn gain_param(name: &str) -> FloatParam {
    FloatParam::new(
        name,
        util::db_to_gain(0.0),
        FloatRange::Skewed {
            min: util::db_to_gain(GAIN_MIN_DB),
            max: util::db_to_gain(GAIN_MAX_DB),
            factor: FloatRange::gain_skew_factor(GAIN_MIN_DB, GAIN_MAX_DB),
        },
    )
    .with_smoother(SmoothingStyle::Logarithmic(20.0))
    .with_unit(" dB")
    .with_value_to_string(formatters::v2s_f32_gain_to_db(1))
    .with_string_to_value(formatters::s2v_f32_gain_to_db())
}

impl Default for BacklineParams {
    fn default() -> Self {
        Self {
            gain: gain_param("Output gain"),
            take_level: gain_param("Take level"),
            click: BoolParam::new("Guide click", false),
            capture_source: EnumParam::new("Capture source", CaptureSource::Main),
            mix: EnumParam::new("Mix", MixMode::Add),
            generate: BoolParam::new("Generate", false),
            bypass: BoolParam::new("Bypass", false)
                .with_value_to_string(formatters::v2s_bool_bypass())
                .with_string_to_value(formatters::s2v_bool_bypass())
                .make_bypass(),
            session: SessionField::default(),
        }
    }
}
