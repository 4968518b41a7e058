"""Field types and the strict base that several domains' request bodies share."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from kepler_kit.text import Line, Text

DisplayName = Annotated[Line, StringConstraints(max_length=200)]
Description = Annotated[Text, StringConstraints(max_length=2000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
