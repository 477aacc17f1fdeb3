//! Upload checks that run before any compilation: is this a component, and does it export
//! `wasi:http/incoming-handler@0.2.x` (WASI 0.2) or `wasi:http/handler@0.3.x` (WASI 0.3)?
//! They take milliseconds even for a 20 MB component, so a wrong upload is refused at once
//! with a message that says what was found and what to do.

use wasmparser::{Encoding, Parser, Payload};

use crate::model::HttpWorld;

/// The exports fnhost serves, one per world: every function has one of them.
pub const HANDLER_EXPORT_PREFIXES: [(&str, HttpWorld); 2] = [
    ("wasi:http/incoming-handler@0.2.", HttpWorld::Proxy),
    ("wasi:http/handler@0.3.", HttpWorld::Service),
];

/// Why an upload is not a servable component. The text is shown to the user as is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidComponent(pub String);

/// What the structural check learnt; shown in deploy progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSummary {
    /// The exact handler export, e.g. `wasi:http/incoming-handler@0.2.4`.
    pub handler_export: String,
    /// Which world that export belongs to.
    pub world: HttpWorld,
    pub imports: Vec<String>,
}

pub fn check_component(bytes: &[u8]) -> Result<ComponentSummary, InvalidComponent> {
    let mut depth = 0usize;
    let mut exports = Vec::new();
    let mut imports = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut totals = Counts::default();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| malformed(bytes, &e))?;
        match &payload {
            Payload::Version { encoding, .. } => frames.push(match encoding {
                Encoding::Module => Frame::Module(Counts::default()),
                Encoding::Component => Frame::Component {
                    modules: Vec::new(),
                    counts: Counts::default(),
                },
            }),
            Payload::MemorySection(reader) => {
                if let Some(Frame::Module(counts)) = frames.last_mut() {
                    counts.memories += reader.count();
                }
            }
            Payload::TableSection(reader) => {
                if let Some(Frame::Module(counts)) = frames.last_mut() {
                    counts.tables += reader.count();
                }
            }
            Payload::InstanceSection(reader) => {
                if let Some(Frame::Component { modules, counts }) = frames.last_mut() {
                    for instance in reader.clone() {
                        let instance = instance.map_err(|e| malformed(bytes, &e))?;
                        // Instances made of other instances' exports create nothing.
                        if let wasmparser::Instance::Instantiate { module_index, .. } = instance {
                            counts.core_instances += 1;
                            if let Some(module) = modules.get(module_index as usize) {
                                counts.memories += module.memories;
                                counts.tables += module.tables;
                            }
                        }
                    }
                }
            }
            Payload::End(_) => match frames.pop() {
                // A module's counts matter where it is instantiated.
                Some(Frame::Module(counts)) => {
                    if let Some(Frame::Component { modules, .. }) = frames.last_mut() {
                        modules.push(counts);
                    }
                }
                // A nested component is counted as instantiated once where it is defined.
                Some(Frame::Component { counts, .. }) => match frames.last_mut() {
                    Some(Frame::Component { counts: parent, .. }) => parent.add(&counts),
                    _ => totals = counts,
                },
                None => {}
            },
            _ => {}
        }
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
    totals.check()?;
    let handler = exports.iter().find_map(|e| {
        HANDLER_EXPORT_PREFIXES
            .iter()
            .find(|(prefix, _)| e.starts_with(prefix))
            .map(|(_, world)| (e, *world))
    });
    match handler {
        Some((handler, world)) => Ok(ComponentSummary {
            handler_export: handler.clone(),
            world,
            imports,
        }),
        None => {
            let found = if exports.is_empty() {
                "it exports nothing".to_string()
            } else {
                format!("it exports {}", exports.join(", "))
            };
            Err(InvalidComponent(format!(
                "the component exports neither wasi:http/incoming-handler@0.2.x nor \
                 wasi:http/handler@0.3.x ({found}), so it cannot serve HTTP. fnhost runs \
                 components of the wasi:http/proxy world (WASI 0.2) or the wasi:http/service \
                 world (WASI 0.3), such as those built for `wasmtime serve` or Spin"
            )))
        }
    }
}

/// What one instance of a component (or core module) creates. Counted from the binary, so a
/// component over fnhost's per-instance caps is refused at upload with fnhost's own words;
/// the pool (or the store's limiter) enforces the same caps when it instantiates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    memories: u32,
    tables: u32,
    core_instances: u32,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.memories += other.memories;
        self.tables += other.tables;
        self.core_instances += other.core_instances;
    }

    fn check(&self) -> Result<(), InvalidComponent> {
        let over = |what: &str, found: u32, max: u32| {
            Err(InvalidComponent(format!(
                "the component creates {found} {what} per instance; fnhost allows at most {max} \
                 so that no function takes more than its share of the instance pool (components \
                 built by cargo for wasm32-wasip2, componentize-js and componentize-py fit)"
            )))
        };
        if self.memories > super::MEMORIES_PER_INSTANCE {
            return over(
                "linear memories (one memory limit covers them all)",
                self.memories,
                super::MEMORIES_PER_INSTANCE,
            );
        }
        if self.core_instances > super::CORE_INSTANCES_PER_INSTANCE {
            return over(
                "core module instances",
                self.core_instances,
                super::CORE_INSTANCES_PER_INSTANCE,
            );
        }
        if self.tables > super::TABLES_PER_INSTANCE {
            return over("tables", self.tables, super::TABLES_PER_INSTANCE);
        }
        Ok(())
    }
}

enum Frame {
    Module(Counts),
    Component {
        /// Per core module defined here, in index order: what one instance of it creates.
        modules: Vec<Counts>,
        counts: Counts,
    },
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

    /// A component over the per-instance caps is refused at upload, before compiling, with
    /// what it creates; one at the caps passes this check.
    #[test]
    fn counts_memories_tables_and_instances() {
        let component = |copies: usize, tables: usize| {
            let table_defs = "(table 1 funcref)".repeat(tables);
            let instances: String = (0..copies)
                .map(|i| format!("(core instance $i{i} (instantiate $m))"))
                .collect();
            wat::parse_str(format!(
                "(component (core module $m (memory 1) {table_defs}) {instances})"
            ))
            .unwrap()
        };
        let check = |bytes: &[u8]| match check_component(bytes) {
            Err(e) if e.0.contains("per instance") => Err(e.0),
            _ => Ok(()), // refused later for exporting nothing, which is not this check
        };
        assert_eq!(check(&component(2, 1)), Ok(()));
        let memories = check(&component(3, 0)).unwrap_err();
        assert!(memories.contains("creates 3 linear memories"), "{memories}");
        let tables = check(&component(1, 17)).unwrap_err();
        assert!(tables.contains("creates 17 tables"), "{tables}");
        let nested = wat::parse_str(
            "(component (component (core module $m (memory 1)) (core instance (instantiate $m)) \
             (core instance (instantiate $m)) (core instance (instantiate $m))))",
        )
        .unwrap();
        assert!(check(&nested).unwrap_err().contains("3 linear memories"));
        let instances: String = (0..65)
            .map(|i| format!("(core instance $i{i} (instantiate $m))"))
            .collect();
        let many = wat::parse_str(format!("(component (core module $m) {instances})")).unwrap();
        assert!(
            check(&many)
                .unwrap_err()
                .contains("65 core module instances")
        );
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

    /// Both worlds' handler exports are accepted and named; a 0.1 or 0.4 one is not.
    #[test]
    fn accepts_either_worlds_handler() {
        let exporting = |name: &str| {
            wat::parse_str(format!(
                r#"(component (instance $h) (export "{name}" (instance $h)))"#
            ))
            .unwrap()
        };
        let p2 = check_component(&exporting("wasi:http/incoming-handler@0.2.6")).unwrap();
        assert_eq!(p2.world, HttpWorld::Proxy);
        assert_eq!(p2.handler_export, "wasi:http/incoming-handler@0.2.6");
        let p3 = check_component(&exporting("wasi:http/handler@0.3.2")).unwrap();
        assert_eq!(p3.world, HttpWorld::Service);
        for other in [
            "wasi:http/handler@0.4.0",
            "wasi:http/incoming-handler@0.1.0",
        ] {
            let err = check_component(&exporting(other)).unwrap_err();
            assert!(err.0.contains(&format!("it exports {other}")), "{err}");
            assert!(err.0.contains("wasi:http/handler@0.3.x"), "{err}");
        }
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
