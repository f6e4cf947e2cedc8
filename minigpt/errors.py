"""The one base class of every mistake a user can make: the CLI prints its message as one
line on stderr and exits with code 2, with no traceback."""


class UserError(ValueError):
    pass
