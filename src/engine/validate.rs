//! Upload checks that run before any compilation: is this a component, and does it export
//! `wasi:http/incoming-handler@0.2.x`? They take milliseconds even for a 20 MB component, so
//! a wrong upload is refused at once with a message that says what was found and what to do.

use wasmparser::{Encoding, Parser, Payload};

/// The export every fnhost function must have.
pub const HANDLER_EXPORT_PREFIX: &str = "wasi:http/incoming-handler@0.2.";

/// Why an upload is not a servable component. The text is shown to the user as is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidComponent(pub String);

/// What the structural check learnt; shown in deploy progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSummary {
    /// The exact handler export, e.g. `wasi:http/incoming-handler@0.2.4`.
    pub handler_export: String,
    pub imports: Vec<String>,
}

pub fn check_component(bytes: &[u8]) -> Result<ComponentSummary, InvalidComponent> {
    let mut depth = 0usize;
    let mut exports = Vec::new();
    let mut imports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| malformed(bytes, &e))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding == Encoding::Module {
                    return Err(InvalidComponent(
                        "this is a core WebAssembly module, not a component. fnhost runs \
                         components of the wasi:http/proxy world: build with \
                         `cargo build --target wasm32-wasip2` (or componentize-js, \
                         componentize-py), or wrap a module with `wasm-tools component new`"
                            .into(),
                    ));
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| malformed(bytes, &e))?;
                    exports.push(export.name.name.to_string());
                }
            }
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| malformed(bytes, &e))?;
                    imports.push(import.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    match exports
        .iter()
        .find(|e| e.starts_with(HANDLER_EXPORT_PREFIX))
    {
        Some(handler) => Ok(ComponentSummary {
            handler_export: handler.clone(),
            imports,
        }),
        None => {
            let found = if exports.is_empty() {
                "it exports nothing".to_string()
            } else {
                format!("it exports {}", exports.join(", "))
            };
            Err(InvalidComponent(format!(
                "the component does not export {HANDLER_EXPORT_PREFIX}x ({found}), so it cannot \
                 serve HTTP. fnhost runs components of the wasi:http/proxy world, such as those \
                 built for `wasmtime serve` or Spin"
            )))
        }
    }
}

fn malformed(bytes: &[u8], err: &wasmparser::BinaryReaderError) -> InvalidComponent {
    if !bytes.starts_with(b"\0asm") {
        return InvalidComponent(format!(
            "not a WebAssembly binary: the file starts with {:02x?} instead of the \\0asm magic \
             ({} bytes uploaded). Upload the .wasm component your toolchain produced",
            &bytes[..bytes.len().min(4)],
            bytes.len()
        ));
    }
    let hint = if err.message().contains("end-of-file") || err.message().contains("eof") {
        "; the file looks truncated, upload it again"
    } else {
        ""
    };
    InvalidComponent(format!(
        "malformed WebAssembly at byte offset {}: {}{hint}",
        err.offset(),
        err.message()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_garbage_core_modules_and_empty_components() {
        let garbage = check_component(b"hello there").unwrap_err();
        assert!(garbage.0.contains("not a WebAssembly binary"), "{garbage}");
        let module = wat::parse_str("(module)").unwrap();
        let err = check_component(&module).unwrap_err();
        assert!(err.0.contains("core WebAssembly module"), "{err}");
        let component = wat::parse_str("(component)").unwrap();
        let err = check_component(&component).unwrap_err();
        assert!(err.0.contains("exports nothing"), "{err}");
    }

    #[test]
    fn names_what_a_wrong_world_exports() {
        let component = wat::parse_str(
            r#"(component
                (core module $m)
                (core instance $i (instantiate $m))
                (instance $run)
                (export "wasi:cli/run@0.2.0" (instance $run)))"#,
        )
        .unwrap();
        let err = check_component(&component).unwrap_err();
        assert!(err.0.contains("it exports wasi:cli/run@0.2.0"), "{err}");
    }

    #[test]
    fn reports_truncation_with_an_offset() {
        let component = wat::parse_str(
            r#"(component (core module $m (func (export "f") (result i32) i32.const 42)))"#,
        )
        .unwrap();
        let err = check_component(&component[..component.len() - 5]).unwrap_err();
        assert!(
            err.0.contains("malformed WebAssembly at byte offset"),
            "{err}"
        );
    }
}
