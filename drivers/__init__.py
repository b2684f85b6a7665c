"""capnet drivers: components that bring frames into a system and take them out.

- ``drivers.synthetic:Source`` — generates numbered frames into a region it originates;
- ``drivers.synthetic:Sink`` — receives frames, checks their numbering, returns the buffers.
"""
