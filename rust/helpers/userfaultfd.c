// SPDX-License-Identifier: GPL-2.0

#include <linux/userfaultfd_k.h>

__rust_helper bool rust_helper_userfaultfd_missing(struct vm_area_struct *vma)
{
	return userfaultfd_missing(vma);
}

__rust_helper bool rust_helper_userfaultfd_minor(struct vm_area_struct *vma)
{
	return userfaultfd_minor(vma);
}

__rust_helper bool rust_helper_userfaultfd_wp(struct vm_area_struct *vma)
{
	return userfaultfd_wp(vma);
}

__rust_helper bool rust_helper_userfaultfd_armed(struct vm_area_struct *vma)
{
	return userfaultfd_armed(vma);
}
