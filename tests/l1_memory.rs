//! L1's byte budget bounds the memory its entries really hold.
//!
//! moka evicts by the weigher's count, so a weigher that counts less than
//! the heap an entry holds lets a 128 MiB budget take several times that.
//! This binary counts every allocation (its own global allocator, rounded
//! up to the allocator's size classes), reads thousands of simulator
//! products, prices and stock levels into L1 and checks that each tier's
//! weighed size covers what its entries hold. One test per binary: the
//! count is process-wide.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use moat::cache::AnyTier;
use moat::catalog::PriceKey;
use moat::sim::SimConfig;
use moat::vocab::{Currency, Priority};
use support::{Moat, Sim, config};

/// Bytes held, as the allocator's size classes round them: 8-byte steps up
/// to 64, then four classes per doubling (mimalloc's bins).
struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

fn class(size: usize) -> isize {
    let size = size.max(8);
    let rounded = if size <= 64 {
        size.div_ceil(8) * 8
    } else {
        let step = (size - 1).ilog2();
        let step = 1usize << (step - 2);
        size.div_ceil(step) * step
    };
    rounded as isize
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(class(layout.size()), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(class(layout.size()), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(class(layout.size()), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(class(new_size) - class(layout.size()), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PRODUCTS: usize = 20_000;

/// Entries `read` added to `tier`, and the bytes held and weighed per entry.
async fn held_by(tier: &dyn AnyTier, read: impl AsyncFnOnce()) -> (u64, f64, f64) {
    let before = HELD.load(Ordering::SeqCst);
    let (entries_before, weighed_before) = tier.usage();
    read().await;
    // usage() applies the inserts moka still has queued.
    let (entries, weighed) = tier.usage();
    let held = HELD.load(Ordering::SeqCst) - before;
    let n = entries - entries_before;
    let per_entry = |bytes: f64| bytes / n as f64;
    (
        n,
        per_entry(held as f64),
        per_entry((weighed - weighed_before) as f64),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_weighs_at_least_what_its_entries_hold() {
    let sim = Sim::start_with(SimConfig {
        products: PRODUCTS,
        ..SimConfig::default()
    })
    .await;
    let moat = Moat::start(config(&sim.url)).await;
    let catalog = &moat.state().catalog;
    let ids: Vec<String> = (0..PRODUCTS).map(|n| format!("prod-{n:06}")).collect();
    let skus: Vec<String> = (0..PRODUCTS).map(|n| format!("SKU-{n:06}")).collect();

    let products = held_by(catalog.products.as_ref(), async || {
        for chunk in ids.chunks(100) {
            catalog
                .products
                .get_many(chunk.to_vec(), Priority::Browse)
                .await;
        }
    })
    .await;
    let prices = held_by(catalog.prices.as_ref(), async || {
        for chunk in skus.chunks(100) {
            let keys = chunk
                .iter()
                .map(|sku| PriceKey {
                    sku: sku.clone(),
                    segment: "default".into(),
                    currency: Currency::from_code("EUR").expect("EUR"),
                })
                .collect();
            catalog.prices.get_many(keys, Priority::Browse).await;
        }
    })
    .await;
    let stock = held_by(catalog.stock.as_ref(), async || {
        for chunk in skus.chunks(100) {
            catalog
                .stock
                .get_many(chunk.to_vec(), Priority::Browse)
                .await;
        }
    })
    .await;
    moat.stop().await;
    for (name, (n, held, weighed)) in [("product", products), ("price", prices), ("stock", stock)] {
        eprintln!("{name}: {n} entries, {held:.0} bytes each held, {weighed:.0} weighed");
        assert_eq!(n, PRODUCTS as u64, "every {name} read is in L1");
        // Over: a budget bounds the memory. Not far over: a budget is not
        // spent on room that is never used.
        assert!(
            weighed >= held,
            "{name}: weighed {weighed:.0} < held {held:.0}"
        );
        assert!(
            weighed <= 1.5 * held,
            "{name}: weighed {weighed:.0} > 1.5 × held {held:.0}"
        );
    }
}
