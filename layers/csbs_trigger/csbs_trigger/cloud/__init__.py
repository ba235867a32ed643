"""The cloud side: IAM, AK/SK signing and the CSBS API, with its typed answers."""
