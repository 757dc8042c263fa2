fn main() {
    std::process::exit(rostersync::cli::main());
}
