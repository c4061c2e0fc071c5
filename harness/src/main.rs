fn main() {
    eprintln!("raftbus: not built yet");
    std::process::exit(2);
}
