//! 统一社会信用代码 (unified social credit code, GB 32100-2015): validation of
//! the 18-character code and its check character, and generation of valid
//! codes for demo data.

/// The 31 characters a code may use (no I, O, Z, S, V), in value order.
const CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// Weights of positions 1–17: 3^(i-1) mod 31.
const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn value_of(c: u8) -> Option<u32> {
    CHARSET.iter().position(|&x| x == c).map(|p| p as u32)
}

/// The check character for the first 17 characters of a code, or `None` if
/// one of them is outside the code's character set.
pub fn check_char(first17: &str) -> Option<char> {
    let bytes = first17.as_bytes();
    if bytes.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (i, &b) in bytes.iter().enumerate() {
        sum += value_of(b)? * WEIGHTS[i];
    }
    let check = (31 - sum % 31) % 31;
    Some(CHARSET[check as usize] as char)
}

/// Why `code` is not a valid 统一社会信用代码, or `Ok` if it is.
pub fn validate(code: &str) -> Result<(), String> {
    if code.len() != 18 || !code.is_ascii() {
        return Err(format!(
            "must be 18 characters, got {}",
            code.chars().count()
        ));
    }
    if let Some((i, c)) = code
        .bytes()
        .enumerate()
        .find(|&(_, b)| value_of(b).is_none())
    {
        return Err(format!(
            "character {} (`{}`) is not allowed (digits and capitals except I, O, Z, S, V)",
            i + 1,
            c as char
        ));
    }
    let expected = check_char(&code[..17]).expect("charset checked above");
    let actual = code.as_bytes()[17] as char;
    if expected != actual {
        return Err(format!(
            "check character is `{actual}` but should be `{expected}`"
        ));
    }
    Ok(())
}

/// Builds a valid code from its parts: registration authority (e.g. `9` for
/// market regulation), entity type (e.g. `1` enterprise), a 6-digit
/// administrative division code, and a sequence number that becomes the
/// 9-character organisation code (with its own GB 11714 check digit).
pub fn generate(authority: char, kind: char, division: &str, serial: u32) -> String {
    let org8 = format!("{:08}", serial % 100_000_000);
    // GB 11714 organisation code check digit.
    const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = org8
        .bytes()
        .zip(ORG_WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    let org_check = match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        n => char::from_digit(n, 10).expect("single digit"),
    };
    let first17 = format!("{authority}{kind}{division}{org8}{org_check}");
    let check = check_char(&first17).expect("generated from valid characters");
    format!("{first17}{check}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_published_example() {
        // The example code printed in GB 32100-2015's annex.
        assert_eq!(validate("91350100M000100Y43"), Ok(()));
    }

    #[test]
    fn refuses_wrong_check_character() {
        let err = validate("91350100M000100Y44").unwrap_err();
        assert!(err.contains("should be `3`"), "{err}");
    }

    #[test]
    fn refuses_bad_length_and_characters() {
        assert!(validate("9135010").unwrap_err().contains("18 characters"));
        assert!(
            validate("91350100M000100I43")
                .unwrap_err()
                .contains("character 16")
        );
        assert!(validate("91350100m000100y43").is_err());
    }

    #[test]
    fn generated_codes_validate_and_differ() {
        let a = generate('9', '1', "330106", 1);
        let b = generate('9', '1', "330106", 2);
        assert_ne!(a, b);
        for serial in 0..2_000 {
            let code = generate('9', '1', "440305", serial * 7919);
            assert_eq!(validate(&code), Ok(()), "{code}");
        }
    }

    #[test]
    fn any_single_character_change_is_caught() {
        let code = generate('9', '1', "110105", 4242);
        for pos in 0..17 {
            let mut bytes = code.clone().into_bytes();
            bytes[pos] = if bytes[pos] == b'1' { b'2' } else { b'1' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(
                validate(&changed).is_err(),
                "change at {pos} missed: {changed}"
            );
        }
    }
}
