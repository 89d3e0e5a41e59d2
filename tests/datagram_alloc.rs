//! The UDP server allocates nothing per datagram once it runs: counted with
//! an allocator that counts the allocations of the server's thread only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stamp_echo::datagram::{DatagramClient, DatagramServer};
use stamp_echo::stamp::Rfc3339;

struct Counting;

static SERVER_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTED.with(Cell::get) {
            SERVER_ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn no_allocation_per_datagram_in_steady_state() {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(Duration::from_secs(10))).expect("safety net");
    let server = DatagramServer::new(socket, Arc::new(Rfc3339)).expect("server");
    let addr = server.local_addr().expect("address");
    let stopper = server.stopper();
    let thread = std::thread::spawn(move || {
        COUNTED.with(|c| c.set(true));
        server.serve()
    });
    let mut client = DatagramClient::connect(addr).expect("client");
    let message = vec![b'x'; 1000];
    // Warm up: the server allocates its buffers and its stamp text.
    for _ in 0..10 {
        client.round_trip(&message).expect("echo");
    }
    let warm = SERVER_ALLOCATIONS.load(Ordering::SeqCst);
    assert!(warm > 0, "the counter counts the server's buffers");
    for _ in 0..500 {
        client.round_trip(&message).expect("echo");
    }
    assert_eq!(SERVER_ALLOCATIONS.load(Ordering::SeqCst), warm, "allocations while serving 500 datagrams");
    stopper.stop().expect("stop");
    assert_eq!(thread.join().expect("server thread").expect("served").messages, 510);
}
