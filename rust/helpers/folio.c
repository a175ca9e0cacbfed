// SPDX-License-Identifier: GPL-2.0

#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/memcontrol.h>
#include <linux/mm.h>
#include <linux/pagemap.h>

__rust_helper void rust_helper_folio_get(struct folio *folio)
{
	folio_get(folio);
}

__rust_helper void rust_helper_folio_put(struct folio *folio)
{
	folio_put(folio);
}

__rust_helper void rust_helper_folio_lock(struct folio *folio)
{
	folio_lock(folio);
}

__rust_helper bool rust_helper_folio_trylock(struct folio *folio)
{
	return folio_trylock(folio);
}

__rust_helper void rust_helper___folio_set_locked(struct folio *folio)
{
	__folio_set_locked(folio);
}

__rust_helper void rust_helper___folio_clear_locked(struct folio *folio)
{
	__folio_clear_locked(folio);
}

__rust_helper bool rust_helper_folio_test_locked(const struct folio *folio)
{
	return folio_test_locked(folio);
}

__rust_helper bool rust_helper_folio_test_uptodate(const struct folio *folio)
{
	return folio_test_uptodate(folio);
}

__rust_helper void rust_helper_folio_mark_uptodate(struct folio *folio)
{
	folio_mark_uptodate(folio);
}

__rust_helper bool rust_helper_folio_mapped(const struct folio *folio)
{
	return folio_mapped(folio);
}

__rust_helper bool rust_helper_folio_test_hwpoison(const struct folio *folio)
{
	return folio_test_hwpoison(folio);
}

__rust_helper size_t rust_helper_folio_size(const struct folio *folio)
{
	return folio_size(folio);
}

__rust_helper unsigned long rust_helper_folio_nr_pages(const struct folio *folio)
{
	return folio_nr_pages(folio);
}

__rust_helper loff_t rust_helper_folio_pos(const struct folio *folio)
{
	return folio_pos(folio);
}

__rust_helper struct page *rust_helper_folio_file_page(struct folio *folio,
						       pgoff_t index)
{
	return folio_file_page(folio, index);
}

__rust_helper void rust_helper_memcpy_from_folio(char *to, struct folio *folio,
						 size_t offset, size_t len)
{
	memcpy_from_folio(to, folio, offset, len);
}

__rust_helper void rust_helper_memcpy_to_folio(struct folio *folio,
					       size_t offset, const char *from,
					       size_t len)
{
	memcpy_to_folio(folio, offset, from, len);
}

__rust_helper void rust_helper_folio_zero_range(struct folio *folio,
						size_t start, size_t length)
{
	folio_zero_range(folio, start, length);
}

__rust_helper struct folio *rust_helper_folio_alloc(gfp_t gfp, unsigned int order)
{
	return folio_alloc(gfp, order);
}

__rust_helper struct folio *
rust_helper_filemap_alloc_folio(gfp_t gfp, unsigned int order,
				struct mempolicy *policy)
{
	return filemap_alloc_folio(gfp, order, policy);
}

__rust_helper struct folio *
rust_helper_vma_alloc_folio(gfp_t gfp, int order, struct vm_area_struct *vma,
			    unsigned long addr)
{
	return vma_alloc_folio(gfp, order, vma, addr);
}

__rust_helper int rust_helper_mem_cgroup_charge(struct folio *folio,
						struct mm_struct *mm, gfp_t gfp)
{
	return mem_cgroup_charge(folio, mm, gfp);
}

__rust_helper bool rust_helper_folio_memcg_charged(struct folio *folio)
{
	return folio_memcg_charged(folio);
}

__rust_helper struct folio *
rust_helper_filemap_lock_folio(struct address_space *mapping, pgoff_t index)
{
	return filemap_lock_folio(mapping, index);
}

__rust_helper struct folio *
rust_helper_filemap_get_folio(struct address_space *mapping, pgoff_t index)
{
	return filemap_get_folio(mapping, index);
}

__rust_helper gfp_t rust_helper_mapping_gfp_mask(const struct address_space *mapping)
{
	return mapping_gfp_mask(mapping);
}

__rust_helper void rust_helper_mapping_set_gfp_mask(struct address_space *m,
						    gfp_t mask)
{
	mapping_set_gfp_mask(m, mask);
}

__rust_helper void rust_helper_mapping_set_inaccessible(struct address_space *mapping)
{
	mapping_set_inaccessible(mapping);
}

__rust_helper void rust_helper_mapping_set_no_direct_map(struct address_space *mapping)
{
	mapping_set_no_direct_map(mapping);
}

__rust_helper bool rust_helper_mapping_no_direct_map(const struct address_space *mapping)
{
	return mapping_no_direct_map(mapping);
}

__rust_helper pgoff_t rust_helper_linear_page_index(const struct vm_area_struct *vma,
						    unsigned long address)
{
	return linear_page_index(vma, address);
}

__rust_helper loff_t rust_helper_i_size_read(const struct inode *inode)
{
	return i_size_read(inode);
}

__rust_helper void rust_helper_i_size_write(struct inode *inode, loff_t i_size)
{
	i_size_write(inode, i_size);
}
