"""Cross-cutting helpers every stage may use: errors, the safe loader, Hub ids, prefetch."""
