fn main() {
    println!("booking-service");
}
