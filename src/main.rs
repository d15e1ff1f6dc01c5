fn main() {
    println!("repro {}", env!("CARGO_PKG_VERSION"));
}
