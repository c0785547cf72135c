//! The 5 Hz language model (`acestep-5Hz-lm-{0.6B,1.7B,4B}`), which plans a piece before the
//! DiT renders it: a chain of thought with its tempo, key, meter, length, language and a rewritten
//! caption (phase 1), then 5 Hz audio codes that sketch it (phase 2), which the DiT takes as a
//! cover-style source. It also describes: what audio codes sound like (understand), a whole
//! piece from a short description (sample mode), a caption and lyrics rewritten (format). The
//! network is `model::causal_lm`; this module holds what runs it.
//!
//! - `tokenizer`: the checkpoint's tokenizer and the ids that matter (EOS, padding, the codes).
//! - `prompt`: the chat prompts of every LM mode.
//! - `plan`: the chain of thought's metadata, read from text and written back as YAML.
//! - `sample`: guidance, penalties, filters and PyTorch's multinomial draw.
//! - `think`: phase 1, the chain of thought under the constrained decoder.
//! - `codes`: phase 2, the audio codes.
//! - `describe`: the description modes (understand, inspire, format): a thought with genres, then
//!   lyrics.
//! - `genres`: the genre list that bounds a description's `genres:` field.

pub mod codes;
pub mod describe;
pub mod genres;
pub mod plan;
pub mod prompt;
pub mod sample;
pub mod think;
pub mod tokenizer;
