"""One router per resource: health, tensors (/clip, /curve), inference (/v2), layers."""
