//! `wrong-world` (test function): a command component exporting `wasi:cli/run`, which fnhost
//! must refuse because it cannot serve HTTP.

fn main() {
    println!("I am a command-line program, not an HTTP handler.");
}
