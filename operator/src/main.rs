fn main() {
    println!("silo-operator");
}
