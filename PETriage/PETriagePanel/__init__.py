"""The PETriage panel inside the Slicer application (Qt): parameter node, widget, dependency installer.

Everything it does to the scene goes through the Qt-free PETriageSlicer package; these files only bind
the .ui, start and poll child processes, and show progress and errors.
"""
