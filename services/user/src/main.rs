fn main() {
    println!("user-service");
}
