fn main() {
    println!("payment-service");
}
