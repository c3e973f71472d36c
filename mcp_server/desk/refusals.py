"""What the desk refuses, with the HTTP status and a message written for the approver."""


class DeskRefusal(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
