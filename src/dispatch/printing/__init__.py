"""The print run for hand delivery: its rules (layout) and its files (bundle)."""

from dispatch.printing.bundle import (PrintBundle, PrintItem, address_boxes, build, bundle_letters, manifest_csv,
                                      manifest_groups, window_problem)
from dispatch.printing.layout import (ENVELOPES, ORDERS, Envelope, LabelGrid, PrintOptions, address_lines,
                                      building_key, label_grid, missing_addresses, order_recipients,
                                      print_options, sort_key)

__all__ = ["ENVELOPES", "ORDERS", "Envelope", "LabelGrid", "PrintBundle", "PrintItem", "PrintOptions",
           "address_boxes", "address_lines", "build", "building_key", "bundle_letters", "label_grid",
           "manifest_csv", "manifest_groups", "missing_addresses", "order_recipients", "print_options",
           "sort_key", "window_problem"]
