/* PAGEMAP_SCAN (Linux 6.7); the system headers are 6.1, so the ABI is spelled out here. */
struct page_region { uint64_t start, end, categories; };
struct pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages,
             category_inverted, category_mask, category_anyof_mask, return_mask;
};
