"""Ray-cast rendering of deforming textured triangle meshes with exact correspondences (Open3D).

- :mod:`~nrsfm_kit.data.render.textures`: procedural periodic textures, bilinear and mip-mapped lookup.
- :mod:`~nrsfm_kit.data.render.mesh`: grid / box triangulations, :class:`MeshObject` (vertices as a function
  of time), the motion classes STATIC / RIGID / NONRIGID, rigid transforms.
- :mod:`~nrsfm_kit.data.render.scene`: :class:`DeformingScene` (Open3D ``RaycastingScene`` per time) and the
  rendered :class:`Frame`: colour, depth, normals, labels, and ground-truth scene flow, optical flow and
  visibility from fixed (triangle, barycentric) material points.
- :mod:`~nrsfm_kit.data.render.noise`: Kinect-like depth noise and holes.
- :mod:`~nrsfm_kit.data.render.reference`: the readable torch ray caster (Moller-Trumbore) the renderer is
  tested against.

Names load lazily (PEP 562): the torch reference is imported only when used.
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "mesh": ["LABEL_NAMES", "NONRIGID", "RIGID", "STATIC", "MeshObject", "apply_pose", "box_mesh", "grid_faces",
             "rotation"],
    "noise": ["kinect_noise"],
    "reference": ["raycast_reference"],
    "scene": ["DeformingScene", "Frame"],
    "textures": ["procedural_texture", "sample_texture", "sample_texture_mip", "texture_pyramid"],
})
