import kachery_resource
from kachery_resource import errors


def test_every_error_class_is_exported_and_rooted() -> None:
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)
               and v.__module__ == errors.__name__]
    for cls in classes:
        assert issubclass(cls, errors.KacheryResourceError)
        assert cls.__name__ in kachery_resource.__all__
        assert (cls.__doc__ and "raised when" in cls.__doc__.lower()) or cls is errors.KacheryResourceError


def test_all_names_resolve() -> None:
    for name in kachery_resource.__all__:
        assert getattr(kachery_resource, name) is not None
