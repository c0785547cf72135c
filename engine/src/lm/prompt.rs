//! The 5 Hz LM's prompts (upstream `llm_inference.py` `build_formatted_prompt*`; the instruction
//! strings are `constants.py`'s). Every prompt is one Qwen3 chat turn pair rendered as the
//! checkpoint's chat template renders a system and a user message with the generation prompt:
//!
//! ```text
//! <|im_start|>system\n# Instruction\n{instruction}\n\n<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n
//! ```

/// Phase 1 and 2: caption and lyrics to metadata and audio codes.
pub const GENERATE: &str = "Generate audio semantic tokens based on the given conditions:";
/// Understand: audio codes to metadata and lyrics.
pub const UNDERSTAND: &str = "Understand the given musical conditions and describe the audio semantics accordingly:";
/// Sample mode: a short description to a full one.
pub const INSPIRE: &str = "Expand the user's input into a more detailed and specific musical description:";
/// Format: the user's caption and lyrics rewritten.
pub const FORMAT: &str = "Format the user's input into a more detailed and specific musical description:";

/// The user turn of the unconditional CFG row when no negative prompt is given (also the
/// negative prompt's default value, which counts as none).
pub const NO_USER_INPUT: &str = "NO USER INPUT";

/// A system and a user message with the assistant turn opened.
pub fn chat(instruction: &str, user: &str) -> String {
    format!("<|im_start|>system\n# Instruction\n{instruction}\n\n<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
}

fn caption_and_lyrics(caption: &str, lyrics: &str) -> String {
    format!("# Caption\n{caption}\n\n# Lyric\n{lyrics}\n")
}

/// Phase 1: the model writes `<think>` + YAML + `</think>` after this.
pub fn plan(caption: &str, lyrics: &str) -> String {
    chat(GENERATE, &caption_and_lyrics(caption, lyrics))
}

/// Phase 2, conditional row: the chain of thought (`<think>\n{yaml}\n</think>`) as the start of
/// the assistant's answer, then the blank line the chat template puts before the content, so the
/// model goes on with audio codes.
pub fn codes(caption: &str, lyrics: &str, chain_of_thought: &str) -> String {
    format!("{}{chain_of_thought}\n\n", chat(GENERATE, &caption_and_lyrics(caption, lyrics)))
}

/// Phase 2, unconditional row: the negative prompt alone as the user turn (`NO USER INPUT`
/// when there is none) and an empty chain of thought, as the model saw with its condition dropped
/// in training.
pub fn codes_unconditional(negative_prompt: &str) -> String {
    let negative = negative_prompt.trim();
    let user = if negative.is_empty() || negative == NO_USER_INPUT { NO_USER_INPUT } else { negative_prompt };
    format!("{}<think>\n\n</think>\n\n", chat(GENERATE, user))
}

/// Understand: the codes' text as the user turn.
pub fn understand(code_text: &str) -> String {
    chat(UNDERSTAND, code_text)
}

/// Sample mode: a short description and whether the piece is instrumental.
pub fn inspire(query: &str, instrumental: bool) -> String {
    chat(INSPIRE, &format!("{query}\n\ninstrumental: {instrumental}"))
}

/// Format: the user's caption and lyrics (without the final newline the generation prompts have).
pub fn format(caption: &str, lyrics: &str) -> String {
    chat(FORMAT, &format!("# Caption\n{caption}\n\n# Lyric\n{lyrics}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codes_prompts_close_the_thought_and_open_the_answer() {
        let p = codes("lofi", "[Instrumental]", "<think>\nbpm: 90\n</think>");
        assert!(p.ends_with("<|im_start|>assistant\n<think>\nbpm: 90\n</think>\n\n"), "{p}");
        assert!(p.contains("user\n# Caption\nlofi\n\n# Lyric\n[Instrumental]\n<|im_end|>"));
        let u = codes_unconditional("NO USER INPUT");
        assert!(u.contains("<|im_start|>user\nNO USER INPUT<|im_end|>") && u.ends_with("<think>\n\n</think>\n\n"));
        assert!(codes_unconditional("  ").contains("user\nNO USER INPUT<|im_end|>"));
        assert!(codes_unconditional("harsh noise").contains("user\nharsh noise<|im_end|>"));
    }
}
