"""Writing small synthetic DICOM files for the tests (needs pydicom)."""

from __future__ import annotations

import numpy as np


def write_dicom(path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                transfer_syntax=None, **attributes):
    """Write ``pixels`` (HxW gray, NxHxW frames or HxWx3 RGB) as a DX DICOM file; returns the path.

    ``attributes`` are set on the data set as given (e.g. ``PixelSpacing=[0.2, 0.3]``,
    ``RescaleSlope=2``); ``transfer_syntax`` compresses the pixel data (pydicom's encoders).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray, for presentation
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientName = "Synthetic^Phantom"
    bits = bits_stored or pixels.dtype.itemsize * 8
    ds.set_pixel_data(pixels, photometric, bits)
    for key, value in attributes.items():
        setattr(ds, key, value)
    if transfer_syntax is not None:
        ds.compress(transfer_syntax)
    ds.save_as(path, enforce_file_format=True)
    return path
