//! What a function reads of its configuration at run time: `wasi:config/store` (0.2.0-rc.1)
//! and Spin's `fermyon:spin/variables@2.0.0`, both answering from the same values, set when a
//! request starts: the config's `config` map and the secrets it lists for `wasi:config`.
//!
//! Spin variable names are lowercase letters, digits and underscores starting with a letter;
//! a config key a Spin component should read must be written that way.

use std::collections::HashMap;

use wasmtime::component::HasData;

mod wasi_bindings {
    wasmtime::component::bindgen!({
        path: "wit/deps/config.wit",
        world: "wasi:config/imports",
        imports: { default: trappable },
    });
}

mod spin_bindings {
    wasmtime::component::bindgen!({
        path: "wit/deps/spin.wit",
        world: "fermyon:spin/variables-imports",
        imports: { default: trappable },
    });
}

use spin_bindings::fermyon::spin::variables;
use wasi_bindings::wasi::config::store;

/// The values one request may read.
pub type ConfigValues = HashMap<String, String>;

/// The bindings' view of a request's values.
pub struct ConfigView<'a> {
    pub values: &'a ConfigValues,
}

struct HasConfig;

impl HasData for HasConfig {
    type Data<'a> = ConfigView<'a>;
}

/// Links `wasi:config/store` and Spin's variables; `view` reaches the values.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> ConfigView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasConfig>(linker, view)?;
    variables::add_to_linker::<_, HasConfig>(linker, view)?;
    Ok(())
}

impl store::Host for ConfigView<'_> {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, store::Error>> {
        Ok(Ok(self.values.get(&key).cloned()))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, store::Error>> {
        let mut all: Vec<(String, String)> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort();
        Ok(Ok(all))
    }
}

impl variables::Host for ConfigView<'_> {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if !is_spin_variable_name(&name) {
            return Ok(Err(variables::Error::InvalidName(format!(
                "{name:?}: variable names are lowercase letters, digits and '_', starting with a letter"
            ))));
        }
        Ok(self.values.get(&name).cloned().ok_or_else(|| {
            variables::Error::Undefined(format!(
                "no variable {name:?}: set it with `fnhost config NAME --config-value {name}=...` \
                 (or list a secret of that name with --secret)"
            ))
        }))
    }
}

fn is_spin_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_variables_read_the_config_values_by_valid_names() {
        let values: ConfigValues = [("api_url".to_string(), "https://x".to_string())].into();
        let mut view = ConfigView { values: &values };
        let get = |view: &mut ConfigView<'_>, name: &str| {
            variables::Host::get(view, name.to_string()).unwrap()
        };
        assert_eq!(get(&mut view, "api_url").unwrap(), "https://x");
        assert!(matches!(
            get(&mut view, "other"),
            Err(variables::Error::Undefined(_))
        ));
        assert!(matches!(
            get(&mut view, "API_URL"),
            Err(variables::Error::InvalidName(_))
        ));
        let all = store::Host::get_all(&mut view).unwrap().unwrap();
        assert_eq!(all, [("api_url".to_string(), "https://x".to_string())]);
    }
}
