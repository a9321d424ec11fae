//! Typed properties. CloudFormation delivers every scalar as a string ("5", "true"), so numeric
//! and boolean fields use the deserializers here. The runtime removes `ServiceToken` and
//! `ServiceTimeout` before parsing; property structs should use `deny_unknown_fields` so that a
//! misspelt property fails loudly instead of being silently ignored.

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::Deserialize;
use std::fmt::Display;
use std::str::FromStr;

/// Properties CloudFormation adds to every custom resource; never handed to the parser.
pub const RESOURCE_SETTINGS: &[&str] = &["ServiceToken", "ServiceTimeout"];

pub trait Properties: DeserializeOwned + Send + Sync + 'static {
    /// Names of properties whose values must never reach a log line or a reason.
    const SECRETS: &'static [&'static str] = &[];

    /// Checks beyond types (formats, ranges, combinations).
    fn validate(&self) -> Result<(), PropertyError> {
        Ok(())
    }
}

/// An ordering-only property (`WaitFor`): a template refers to other resources in it so that
/// CloudFormation creates this resource after them (and deletes it before them), where a
/// `DependsOn` cannot be used because the other resource is conditional. Its value means
/// nothing to the function, and a change of it is no change: every `WaitFor` equals every other.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WaitFor(#[allow(dead_code)] serde_json::Value);

impl PartialEq for WaitFor {
    fn eq(&self, _: &WaitFor) -> bool {
        true
    }
}

/// A property that is missing or has a bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid property {property}: {message}")]
pub struct PropertyError {
    pub property: String,
    pub message: String,
}

impl PropertyError {
    pub fn new(property: impl Into<String>, message: impl Into<String>) -> Self {
        PropertyError {
            property: property.into(),
            message: message.into(),
        }
    }
}

/// Parses a properties object (settings removed) into `P`, naming the property on failure
/// (and never quoting the value of one of `P::SECRETS`).
pub fn parse<P: Properties>(mut value: serde_json::Value) -> Result<P, PropertyError> {
    let secret_names = P::SECRETS;
    if let Some(map) = value.as_object_mut() {
        for key in RESOURCE_SETTINGS {
            map.remove(*key);
        }
    } else if value.is_null() {
        value = serde_json::Value::Object(Default::default());
    }
    let parsed: P = serde_path_to_error::deserialize(&value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        let property = if path == "." {
            // Missing or unknown fields are reported at the root; serde names them in the text.
            extract_backticked(&inner).unwrap_or_else(|| "ResourceProperties".into())
        } else {
            path.clone()
        };
        let secret = secret_names
            .iter()
            .any(|s| property == *s || property.starts_with(&format!("{s}.")));
        let message = if secret {
            "has a value of the wrong type (value not shown: secret)".to_string()
        } else {
            inner
        };
        PropertyError { property, message }
    })?;
    parsed.validate()?;
    Ok(parsed)
}

fn extract_backticked(text: &str) -> Option<String> {
    let start = text.find('`')? + 1;
    let len = text[start..].find('`')?;
    Some(text[start..start + len].to_string())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOr<T> {
    Str(String),
    Native(T),
}

fn parse_number<T, E>(s: &str) -> Result<T, E>
where
    T: FromStr,
    E: de::Error,
{
    s.trim().parse::<T>().map_err(|_| {
        E::custom(format!(
            "expected a number (as CloudFormation sends it, e.g. \"5\"), got {s:?}"
        ))
    })
}

fn parse_bool<E: de::Error>(s: &str) -> Result<bool, E> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(E::custom(format!(
            "expected \"true\" or \"false\", got {s:?}"
        ))),
    }
}

/// A number sent as a string ("5") or as a JSON number.
pub fn number<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + Deserialize<'de>,
    <T as FromStr>::Err: Display,
{
    match StringOr::<T>::deserialize(d)? {
        StringOr::Str(s) => parse_number(&s),
        StringOr::Native(n) => Ok(n),
    }
}

/// Like [`number`], for `Option` fields (use with `#[serde(default)]`); "" counts as absent.
pub fn opt_number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + Deserialize<'de>,
    <T as FromStr>::Err: Display,
{
    match Option::<StringOr<T>>::deserialize(d)? {
        None => Ok(None),
        Some(StringOr::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(StringOr::Str(s)) => parse_number(&s).map(Some),
        Some(StringOr::Native(n)) => Ok(Some(n)),
    }
}

/// A boolean sent as "true"/"false" (any case) or as a JSON boolean.
pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match StringOr::<bool>::deserialize(d)? {
        StringOr::Str(s) => parse_bool(&s),
        StringOr::Native(b) => Ok(b),
    }
}

/// Like [`boolean`], for `Option` fields (use with `#[serde(default)]`); "" counts as absent.
pub fn opt_boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<StringOr<bool>>::deserialize(d)? {
        None => Ok(None),
        Some(StringOr::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(StringOr::Str(s)) => parse_bool(&s).map(Some),
        Some(StringOr::Native(b)) => Ok(Some(b)),
    }
}

/// A list of strings, sent as a list or as one comma-separated string (what `!Join` or a
/// `CommaDelimitedList` parameter passed through `!Ref` gives). Blank items are dropped.
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOr {
        List(Vec<String>),
        Str(String),
    }
    let items = match ListOr::deserialize(d).map_err(|_| {
        <D::Error as de::Error>::custom("expected a list of strings or a comma-separated string")
    })? {
        ListOr::List(items) => items,
        ListOr::Str(s) => s.split(',').map(str::to_string).collect(),
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// An optional non-empty string: "" (what an unset template parameter gives) counts as absent.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase", deny_unknown_fields)]
    #[allow(dead_code)] // fields exist to be parsed
    struct Sample {
        name: String,
        #[serde(default, deserialize_with = "opt_number")]
        count: Option<u32>,
        #[serde(default, deserialize_with = "opt_boolean")]
        enabled: Option<bool>,
        #[serde(default, deserialize_with = "string_list")]
        items: Vec<String>,
        #[serde(default)]
        token: Option<String>,
    }
    impl Properties for Sample {
        const SECRETS: &'static [&'static str] = &["Token"];
    }

    #[test]
    fn strings_become_numbers_booleans_and_lists() {
        let p: Sample = parse(
            json!({"ServiceToken": "arn:x", "ServiceTimeout": "300", "Name": "a", "Count": "5",
                   "Enabled": "TRUE", "Items": "x, y,,z"}),
        )
        .unwrap();
        assert_eq!(p.count, Some(5));
        assert_eq!(p.enabled, Some(true));
        assert_eq!(p.items, vec!["x", "y", "z"]);
        let p: Sample = parse(json!({"Name": "a", "Items": ["q"], "Count": ""})).unwrap();
        assert_eq!(p.items, vec!["q"]);
        assert_eq!(p.count, None);
    }

    #[test]
    fn bad_number_names_the_property_and_the_expectation() {
        let err = parse::<Sample>(json!({"Name": "a", "Count": "five"})).unwrap_err();
        assert_eq!(err.property, "Count");
        assert!(err.message.contains("expected a number"), "{err}");
        assert!(err.message.contains("five"), "{err}");
    }

    #[test]
    fn missing_and_unknown_properties_are_named() {
        let err = parse::<Sample>(json!({})).unwrap_err();
        assert_eq!(err.property, "Name");
        let err = parse::<Sample>(json!({"Name": "a", "Nmae": "b"})).unwrap_err();
        assert_eq!(err.property, "Nmae");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn a_secret_property_with_a_bad_type_is_named_without_its_value() {
        let err = parse::<Sample>(json!({"Name": "a", "Token": ["s3cr3t-value"]})).unwrap_err();
        assert_eq!(err.property, "Token");
        assert!(!err.to_string().contains("s3cr3t-value"));
    }
}
