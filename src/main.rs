fn main() {
    std::process::exit(factortopy::cli::main());
}
